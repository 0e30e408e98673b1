-- unmask.nvim: inline completions from the local unmask language server.
--
--   require('unmask').setup({})   -- runs `unmask serve` from PATH; that is the whole configuration
--
-- Starts the server through vim.lsp (vim.lsp.config/enable on 0.11+, vim.lsp.start on 0.10),
-- shows its suggestions as ghost text (Neovim's vim.lsp.inline_completion on 0.12+, the
-- plugin's extmarks before), the live denoising drafts, and next-edit suggestions.
-- Everything clever happens in the server; this plugin places text and maps keys.
-- Options: lua/unmask/config.lua and :help unmask.
local config = require('unmask.config')
local util = require('unmask.util')
local ghost = require('unmask.ghost')
local drafts = require('unmask.drafts')
local next_edit = require('unmask.next_edit')

local M = {}

---@type unmask.Config?
M.config = nil
M.problem = nil -- why the server could not start (shown by :checkhealth unmask)

--- 'native' or 'extmarks': how ghost text is drawn with these options on this Neovim.
function M.renderer(cfg)
  cfg = cfg or M.config or config.defaults
  if cfg.ghost == 'extmarks' or not vim.lsp.inline_completion then
    return 'extmarks'
  end
  return 'native'
end

--- The server command, or nil and why not.
function M.command(cfg)
  cfg = cfg or M.config or config.defaults
  local cmd = cfg.cmd or { 'unmask', 'serve' }
  if type(cmd) ~= 'table' or type(cmd[1]) ~= 'string' then
    return nil, 'cmd must be a list like { "unmask", "serve" }'
  end
  if vim.fn.executable(cmd[1]) ~= 1 then
    return nil,
      ('`%s` is not an executable on PATH. Install unmask into a virtual environment (see '
        .. 'editors/README.md in the unmask repository), then put its bin/ folder on PATH, or '
        .. "pass cmd = { '/path/to/venv/bin/unmask', 'serve' } to require('unmask').setup()"):format(cmd[1])
  end
  return cmd
end

local function highlights()
  local ghost_hl = vim.fn.hlexists('ComplHint') == 1 and 'ComplHint' or 'Comment'
  vim.api.nvim_set_hl(0, 'UnmaskGhost', { link = ghost_hl, default = true })
  vim.api.nvim_set_hl(0, 'UnmaskDraft', { link = 'NonText', default = true })
  vim.api.nvim_set_hl(0, 'UnmaskNextEdit', { link = 'DiffAdd', default = true })
  vim.api.nvim_set_hl(0, 'UnmaskNextEditTarget', { link = 'DiffText', default = true })
  vim.api.nvim_set_hl(0, 'UnmaskNextEditSign', { link = 'Comment', default = true })
end

--- Accept the shown suggestion. Returns false when there is none (so a mapping can fall back).
function M.accept(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if M.renderer() == 'native' then
    return vim.lsp.inline_completion.get({ bufnr = bufnr })
  end
  return ghost.accept(bufnr)
end

--- Hide the shown suggestion (the server is told it was rejected). False when there is none.
function M.dismiss(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  drafts.clear(bufnr)
  if M.renderer() == 'native' then
    local client = util.client(bufnr)
    return vim.lsp.inline_completion.get({
      bufnr = bufnr,
      on_accept = function(item)
        if client then
          util.notify(client, 'unmask/didRejectCompletion', {
            item = { insertText = item.insert_text, command = item.command },
          })
        end
      end,
    })
  end
  return ghost.dismiss(bufnr)
end

--- Ask for a suggestion now (Invoked: no confidence gate, the longer budget).
function M.trigger(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if M.renderer() == 'native' then
    -- 0.12 has no public "invoke now"; cycling asks the server again with what it has
    vim.api.nvim_exec_autocmds('CursorMovedI', { buffer = bufnr, modeline = false })
  else
    ghost.request(bufnr, ghost.INVOKED)
  end
end

--- Turn suggestions on or off everywhere (the server keeps running).
function M.enable(on)
  M.enabled = on
  ghost.enabled = on
  if M.renderer() == 'native' then
    for _, client in ipairs(vim.lsp.get_clients({ name = util.name })) do
      for bufnr in pairs(client.attached_buffers) do
        vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
      end
    end
  end
  if not on then
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      ghost.hide(bufnr)
      drafts.clear(bufnr)
      next_edit.clear(bufnr)
    end
  end
end

--- One line for a statusline: "unmask 120ms", "unmask off", "unmask (not running)".
function M.status()
  if not M.enabled then
    return 'unmask off'
  end
  local bufnr = vim.api.nvim_get_current_buf()
  if not util.client(bufnr) then
    return 'unmask (not running)'
  end
  local ms = drafts.last_ms[bufnr]
  return ms and ('unmask %dms'):format(ms) or 'unmask'
end

local function map(bufnr, mode, lhs, fn, desc)
  if not lhs or lhs == '' then
    return
  end
  vim.keymap.set(mode, lhs, function()
    if fn(bufnr) then
      return ''
    end
    return lhs
  end, { buffer = bufnr, expr = true, desc = desc, silent = true })
end

local function on_attach(bufnr, client)
  local cfg = M.config
  local keys = cfg.keymaps or {}
  if M.renderer() == 'native' then
    vim.lsp.inline_completion.enable(M.enabled, { bufnr = bufnr })
  else
    ghost.attach(bufnr, cfg)
  end
  map(bufnr, 'i', keys.accept, M.accept, 'unmask: accept the suggestion')
  map(bufnr, 'i', keys.dismiss, M.dismiss, 'unmask: dismiss the suggestion')
  if keys.trigger then
    vim.keymap.set('i', keys.trigger, function()
      M.trigger(bufnr)
    end, { buffer = bufnr, desc = 'unmask: suggest now' })
  end
  if cfg.next_edit and cfg.next_edit.enabled then
    next_edit.attach(bufnr, cfg.next_edit)
    map(bufnr, 'n', keys.next_edit_accept, next_edit.accept, 'unmask: jump to / apply the next edit')
    map(bufnr, 'n', keys.next_edit_dismiss, next_edit.dismiss, 'unmask: dismiss next-edit suggestions')
  end
  vim.b[bufnr].unmask_client_id = client.id
end

local function on_detach(bufnr)
  ghost.detach(bufnr)
  next_edit.detach(bufnr)
  drafts.clear(bufnr)
end

--- The vim.lsp client configuration (shared by vim.lsp.config and vim.lsp.start).
local function lsp_config(cfg, cmd)
  local settings = vim.tbl_extend('force', {}, cfg.settings or {})
  settings.streamDrafts = cfg.drafts and true or false
  return {
    cmd = cmd,
    filetypes = cfg.filetypes,
    root_markers = cfg.root_markers,
    init_options = settings,
    settings = { unmask = settings },
    handlers = { ['unmask/draft'] = drafts.handler },
  }
end

--- Start the server for a buffer on Neovim 0.10 (0.11+ uses vim.lsp.enable).
local function start_010(bufnr, lsp)
  if vim.bo[bufnr].buftype ~= '' then
    return
  end
  if lsp.filetypes and not vim.tbl_contains(lsp.filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  local root = vim.fs.root(bufnr, lsp.root_markers) or (name ~= '' and vim.fs.dirname(name)) or vim.uv.cwd()
  vim.lsp.start(vim.tbl_extend('force', lsp, { name = util.name, root_dir = root }), { bufnr = bufnr })
end

local function commands()
  vim.api.nvim_create_user_command('Unmask', function(a)
    local sub = a.fargs[1] or 'status'
    if sub == 'enable' or sub == 'disable' or sub == 'toggle' then
      M.enable(sub == 'enable' or (sub == 'toggle' and not M.enabled))
      vim.notify('unmask: suggestions ' .. (M.enabled and 'on' or 'off'))
    elseif sub == 'restart' then
      M.restart()
    elseif sub == 'log' then
      vim.cmd.split(vim.fn.fnameescape(util.log_file()))
    elseif sub == 'status' then
      local client = util.client(vim.api.nvim_get_current_buf())
      if not client then
        vim.notify(M.problem or 'unmask: not attached to this buffer', vim.log.levels.WARN)
        return
      end
      local res = util.has_011 and client:request_sync('unmask/stats', {}, 2000)
        or client.request_sync('unmask/stats', {}, 2000)
      local s = res and res.result or {}
      vim.notify(
        ('%s | model %s | requests %s, answered %s, accepted %s'):format(
          M.status(),
          (s.model and s.model ~= '') and s.model or '(loading or failed: :Unmask log)',
          s.requests or '?',
          s.answered or '?',
          s.accepted or '?'
        )
      )
    else
      vim.notify('unmask: unknown subcommand ' .. sub, vim.log.levels.ERROR)
    end
  end, {
    nargs = '?',
    complete = function()
      return { 'status', 'enable', 'disable', 'toggle', 'restart', 'log' }
    end,
    desc = 'unmask: status, enable, disable, toggle, restart, log',
  })
end

--- Stop the server and start it again for the open buffers.
function M.restart()
  local clients = vim.lsp.get_clients({ name = util.name })
  local bufs = {}
  for _, client in ipairs(clients) do
    for b in pairs(client.attached_buffers) do
      bufs[#bufs + 1] = b
    end
    if util.has_011 then
      client:stop(true)
    else
      client.stop(true)
    end
  end
  vim.defer_fn(function()
    for _, b in ipairs(bufs) do
      if vim.api.nvim_buf_is_loaded(b) then
        vim.api.nvim_exec_autocmds('FileType', { buffer = b, modeline = false })
      end
    end
  end, 500)
end

--- Set up the plugin. Call once; every option has a default (lua/unmask/config.lua).
---@param opts? table
function M.setup(opts)
  local cfg = config.merge(opts)
  M.config = cfg
  M.enabled = true
  ghost.enabled = true
  highlights()
  commands()
  local group = vim.api.nvim_create_augroup('unmask', { clear = true })
  vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = highlights })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == util.name then
        on_attach(ev.buf, client)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == util.name then
        on_detach(ev.buf)
      end
    end,
  })

  local cmd, problem = M.command(cfg)
  M.problem = problem and ('unmask: ' .. problem) or nil
  if not cmd then
    vim.notify(M.problem, vim.log.levels.ERROR)
    return
  end
  local lsp = lsp_config(cfg, cmd)
  if vim.lsp.config and vim.lsp.enable then
    vim.lsp.config(util.name, lsp)
    vim.lsp.enable(util.name)
  else
    vim.api.nvim_create_autocmd('FileType', {
      group = group,
      callback = function(ev)
        start_010(ev.buf, lsp)
      end,
    })
    for _, b in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(b) and vim.bo[b].filetype ~= '' then
        start_010(b, lsp)
      end
    end
  end
end

return M
