-- :checkhealth unmask — is the plugin set up, can the server start, is it running with a model.
local M = {}

function M.check()
  local h = vim.health
  local unmask = require('unmask')
  local util = require('unmask.util')

  h.start('unmask: Neovim')
  local v = vim.version()
  local version = ('%d.%d.%d'):format(v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.10') == 1 then
    h.ok('Neovim ' .. version)
  else
    h.error('Neovim ' .. version .. ' is too old', { 'unmask.nvim needs Neovim 0.10 or newer' })
  end

  h.start('unmask: setup')
  local cfg = unmask.config
  if not cfg then
    h.error("require('unmask').setup() was not called", { "add require('unmask').setup({}) to your config" })
    return
  end
  h.ok('setup() called')
  local cmd, problem = unmask.command(cfg)
  if cmd then
    h.ok(('server command: %s (%s)'):format(table.concat(cmd, ' '), vim.fn.exepath(cmd[1])))
  else
    h.error(problem)
  end
  local renderer = unmask.renderer(cfg)
  h.info(
    ('ghost text: %s%s'):format(
      renderer == 'native' and "Neovim's vim.lsp.inline_completion" or "the plugin's extmarks",
      cfg.ghost == 'auto' and ' (ghost = "auto")' or ''
    )
  )
  h.info('live drafts: ' .. (cfg.drafts and 'on' or 'off') .. '; suggestions: ' .. (unmask.enabled and 'on' or 'off'))

  h.start('unmask: server')
  local clients = vim.lsp.get_clients({ name = util.name })
  if #clients == 0 then
    h.warn('not running (it starts when you open a file)', { 'open a file, then run :checkhealth unmask again' })
  end
  for _, client in ipairs(clients) do
    local n = vim.tbl_count(client.attached_buffers)
    h.ok(('running (client %d, %d buffer%s, root %s)'):format(client.id, n, n == 1 and '' or 's', client.root_dir or '-'))
    local res = util.has_011 and client:request_sync('unmask/stats', {}, 3000)
      or client.request_sync('unmask/stats', {}, 3000)
    local stats = res and res.result
    if not stats then
      h.warn('no answer to unmask/stats within 3 s', { 'the server may be busy loading; see :Unmask log' })
    elseif stats.model and stats.model ~= '' then
      h.ok(('model: %s (%d requests, %d answered, %d accepted)'):format(
        stats.model,
        stats.requests,
        stats.answered,
        stats.accepted
      ))
    else
      h.warn('no model loaded yet, or it failed to load', {
        'wait a few seconds after start; otherwise read the log (' .. util.log_file() .. ')',
        'run `unmask doctor` in a shell for a full check of the install and the model',
      })
    end
    local experimental = client.server_capabilities and client.server_capabilities.experimental or {}
    if require('unmask.next_edit').unsupported(client.id) then
      h.warn('next-edit: this server does not answer ' .. cfg.next_edit.method, {
        'update unmask (next-edit suggestions need a server that offers them)',
      })
    elseif type(experimental) == 'table' and experimental.copilotInlineEditProvider then
      h.ok(
        ('next-edit: offered by the server (%s); %s'):format(
          cfg.next_edit.method,
          cfg.next_edit.enabled and 'on' or 'off (next_edit.enabled = false)'
        )
      )
    else
      h.info('next-edit: the server does not advertise ' .. cfg.next_edit.method .. '; the plugin asks anyway')
    end
  end
  h.info('server log: ' .. util.log_file())
end

return M
