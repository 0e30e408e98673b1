-- Ghost text drawn by the plugin, for Neovim 0.10/0.11 (0.12 has vim.lsp.inline_completion):
-- asks `textDocument/inlineCompletion` after typing pauses, draws the answer as extmarks
-- (UnmaskGhost), accepts or dismisses it, and tells the server (shown/accepted/rejected).
-- The server decides everything about the text; this file only places it.
local util = require('unmask.util')

local M = {}
M.ns = vim.api.nvim_create_namespace('unmask.ghost')

local AUTOMATIC, INVOKED = 2, 1

---@class unmask.GhostState
---@field timer? uv.uv_timer_t
---@field pending? {client: vim.lsp.Client, id: integer}
---@field shown? {client_id: integer, item: table, row: integer, col: integer, text: string, tick: integer}

---@type table<integer, unmask.GhostState>
local state = {}
local debounce_ms = 75

local function st(bufnr)
  state[bufnr] = state[bufnr] or {}
  return state[bufnr]
end

local function stop_timer(s)
  if s.timer then
    s.timer:stop()
    s.timer:close()
    s.timer = nil
  end
end

local function cancel_pending(s)
  if s.pending then
    util.cancel(s.pending.client, s.pending.id)
    s.pending = nil
  end
end

--- Remove the ghost text (no feedback to the server).
function M.hide(bufnr)
  local s = state[bufnr]
  if s then
    s.shown = nil
  end
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

local function draw(bufnr, row, col, text)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local first, rest = util.virt(text, 'UnmaskGhost', bufnr)
  vim.api.nvim_buf_set_extmark(bufnr, M.ns, row, col, {
    virt_text = first,
    virt_text_pos = 'inline',
    virt_lines = #rest > 0 and rest or nil,
    hl_mode = 'combine',
  })
end

--- Show `item` (an InlineCompletionItem) at the cursor; returns whether anything was drawn.
local function show(bufnr, client, item)
  local text = item.insertText
  if type(text) == 'table' then
    text = text.value -- a snippet: shown and inserted as plain text
  end
  local cursor = vim.api.nvim_win_get_cursor(0)
  local row, col = cursor[1] - 1, cursor[2]
  local ghost = text
  if item.range then
    -- the item replaces range; what the range holds up to the cursor is already typed
    local sr, er = item.range.start.line, item.range['end'].line
    local sc = util.byte_col(bufnr, item.range.start, client.offset_encoding)
    local ec = util.byte_col(bufnr, item.range['end'], client.offset_encoding)
    if er ~= row or ec ~= col then
      return false -- the server's range always ends at the cursor; anything else is not for us
    end
    local typed = table.concat(vim.api.nvim_buf_get_text(bufnr, sr, sc, er, ec, {}), '\n')
    if text:sub(1, #typed) ~= typed then
      return false
    end
    ghost = text:sub(#typed + 1)
  end
  if ghost == '' then
    return false
  end
  draw(bufnr, row, col, ghost)
  local s = st(bufnr)
  s.shown = {
    client_id = client.id,
    item = item,
    row = row,
    col = col,
    text = ghost,
    tick = vim.api.nvim_buf_get_changedtick(bufnr),
  }
  util.notify(client, 'textDocument/didShowCompletion', { item = item })
  return true
end

--- Ask the server for a suggestion at the cursor now.
---@param kind? integer InlineCompletionTriggerKind (1 invoked, 2 automatic)
function M.request(bufnr, kind)
  local client = util.client(bufnr)
  if not client or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local s = st(bufnr)
  cancel_pending(s)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or AUTOMATIC }
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local cursor = vim.api.nvim_win_get_cursor(0)
  local id
  id = util.request(client, 'textDocument/inlineCompletion', params, function(err, result)
    if not s.pending or s.pending.id ~= id then
      return -- superseded here already
    end
    s.pending = nil
    if err or not result then
      return -- ContentModified / RequestCancelled: a newer keystroke took over
    end
    if
      vim.api.nvim_buf_get_changedtick(bufnr) ~= tick
      or vim.api.nvim_get_current_buf() ~= bufnr
      or not vim.deep_equal(vim.api.nvim_win_get_cursor(0), cursor)
      or not util.in_insert()
    then
      return -- stale: the user moved on
    end
    local items = result.items or result
    require('unmask.drafts').clear(bufnr)
    M.hide(bufnr)
    if items[1] then
      show(bufnr, client, items[1])
    end
  end, bufnr)
  if id then
    s.pending = { client = client, id = id }
  end
end

--- After a keystroke: keep the ghost if the user typed its beginning, and ask again after a pause.
local function on_change(bufnr)
  local s = st(bufnr)
  stop_timer(s)
  cancel_pending(s)
  local shown = s.shown
  if shown then
    local cursor = vim.api.nvim_win_get_cursor(0)
    local row, col = cursor[1] - 1, cursor[2]
    local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    local typed = row == shown.row and col >= shown.col and line:sub(shown.col + 1, col) or nil
    if typed and typed ~= '' and shown.text:sub(1, #typed) == typed and #typed < #shown.text then
      -- type-through: show the rest at once (the server answers the same without a model call)
      shown.text, shown.col = shown.text:sub(#typed + 1), col
      shown.tick = vim.api.nvim_buf_get_changedtick(bufnr)
      draw(bufnr, row, col, shown.text)
    elseif not (row == shown.row and col == shown.col and shown.tick == vim.api.nvim_buf_get_changedtick(bufnr)) then
      M.hide(bufnr)
    end
  end
  s.timer = vim.defer_fn(function()
    s.timer = nil
    if vim.api.nvim_buf_is_valid(bufnr) and util.in_insert() then
      M.request(bufnr, AUTOMATIC)
    end
  end, debounce_ms)
end

--- Whether a suggestion is shown in the buffer.
function M.visible(bufnr)
  local s = state[bufnr]
  return s ~= nil and s.shown ~= nil
end

--- Insert the shown suggestion. Returns false when there is none. The edit itself runs
--- scheduled, so this can back an `expr` mapping.
---@param bufnr integer
---@param on_done? fun()
function M.accept(bufnr, on_done)
  local s = state[bufnr]
  local shown = s and s.shown
  if not shown then
    return false
  end
  vim.schedule(function()
    M.hide(bufnr)
    if vim.api.nvim_buf_get_changedtick(bufnr) ~= shown.tick then
      return
    end
    local lines = vim.split(shown.text, '\n', { plain = true })
    vim.api.nvim_buf_set_text(bufnr, shown.row, shown.col, shown.row, shown.col, lines)
    local last_col = (#lines == 1 and shown.col or 0) + #lines[#lines]
    vim.api.nvim_win_set_cursor(0, { shown.row + #lines, last_col })
    local client = vim.lsp.get_client_by_id(shown.client_id)
    if client then
      util.exec_cmd(client, shown.item.command, bufnr)
    end
    if on_done then
      on_done()
    end
  end)
  return true
end

--- Hide the shown suggestion and tell the server it was rejected. Returns false when there is none.
function M.dismiss(bufnr)
  local s = state[bufnr]
  local shown = s and s.shown
  if not shown then
    return false
  end
  M.hide(bufnr)
  local client = vim.lsp.get_client_by_id(shown.client_id)
  if client then
    util.notify(client, 'unmask/didRejectCompletion', { item = shown.item })
  end
  return true
end

function M.attach(bufnr, opts)
  debounce_ms = opts.debounce_ms or debounce_ms
  local group = vim.api.nvim_create_augroup('unmask.ghost.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'InsertEnter', 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if M.enabled then
        on_change(bufnr)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      local s = st(bufnr)
      stop_timer(s)
      cancel_pending(s)
      M.dismiss(bufnr)
    end,
  })
end

function M.detach(bufnr)
  local s = state[bufnr]
  if s then
    stop_timer(s)
    s.pending = nil
  end
  M.hide(bufnr)
  state[bufnr] = nil
  pcall(vim.api.nvim_del_augroup_by_name, 'unmask.ghost.' .. bufnr)
end

M.enabled = true
M.INVOKED = INVOKED

return M
