-- Next-edit suggestions: edits elsewhere in the buffer that carry on the one just made.
-- Renders a `textDocument/copilotInlineEdit`-shaped answer
--   {edits = {{text, textDocument = {uri, version}, range, command?}}}
-- as highlighted targets (UnmaskNextEditTarget) with the proposed text beside them
-- (UnmaskNextEdit); jump to the next target, apply it, or dismiss them all.
--
-- `unmask serve` answers it after an edit (the server advertises
-- `experimental.copilotInlineEditProvider`). The plugin asks once the edit is done (back in
-- Normal mode, after `debounce_ms`); applying one edit drops the others (they were made for
-- the text before it) and the edit itself makes the plugin ask again. A server that answers
-- "method not found" is not asked again. Tests: tests/test_editors_nvim_nes.py (real server),
-- tests/test_editors_nvim.py (an injected answer).
local util = require('unmask.util')

local M = {}
M.ns = vim.api.nvim_create_namespace('unmask.next_edit')

---@type table<integer, {client_id: integer, edits: table[]}>
local state = {}
local unsupported = {} -- client id -> true once the server said it does not know the method
local timers = {}
local asked = {} -- bufnr -> changedtick last asked about
local cfg = { enabled = true, method = 'textDocument/copilotInlineEdit', debounce_ms = 300 }

function M.clear(bufnr)
  state[bufnr] = nil
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- The edit's range as 0-based byte positions in the buffer.
local function span(bufnr, edit, encoding)
  local r = edit.range
  return r.start.line,
    util.byte_col(bufnr, r.start, encoding),
    r['end'].line,
    util.byte_col(bufnr, r['end'], encoding)
end

--- Draw the suggestions of an answer. Edits for another document or version are skipped.
---@param bufnr integer
---@param client_id integer
---@param result {edits: table[]}?
---@return integer shown how many edits are shown
function M.show(bufnr, client_id, result)
  M.clear(bufnr)
  local client = vim.lsp.get_client_by_id(client_id)
  local uri = vim.uri_from_bufnr(bufnr)
  local edits = {}
  for _, e in ipairs(result and result.edits or {}) do
    local doc = e.textDocument or {}
    if (doc.uri == nil or doc.uri == uri) and (doc.version == nil or doc.version == util.version(bufnr)) then
      edits[#edits + 1] = e
    end
  end
  if #edits == 0 then
    return 0
  end
  table.sort(edits, function(a, b)
    local x, y = a.range.start, b.range.start
    return x.line < y.line or (x.line == y.line and x.character < y.character)
  end)
  local encoding = client and client.offset_encoding or 'utf-16'
  for _, e in ipairs(edits) do
    local sr, sc, er, ec = span(bufnr, e, encoding)
    e._mark = vim.api.nvim_buf_set_extmark(bufnr, M.ns, sr, sc, {
      end_row = er,
      end_col = ec,
      hl_group = 'UnmaskNextEditTarget',
    })
    local first, rest = util.virt(e.text, 'UnmaskNextEdit', bufnr)
    table.insert(first, 1, { '  → ', 'UnmaskNextEditSign' })
    vim.api.nvim_buf_set_extmark(bufnr, M.ns, er, 0, {
      virt_text = first,
      virt_text_pos = 'eol',
      virt_lines = #rest > 0 and rest or nil,
    })
  end
  state[bufnr] = { client_id = client_id, edits = edits }
  return #edits
end

function M.visible(bufnr)
  return state[bufnr] ~= nil
end

--- The shown edit at or after the cursor (wrapping around), and whether the cursor is on it.
local function target(bufnr)
  local s = state[bufnr]
  if not s then
    return nil
  end
  local cur = vim.api.nvim_win_get_cursor(0)
  local row, col = cur[1] - 1, cur[2]
  for _, e in ipairs(s.edits) do
    local m = vim.api.nvim_buf_get_extmark_by_id(bufnr, M.ns, e._mark, { details = true })
    local sr, sc, er, ec = m[1], m[2], m[3].end_row, m[3].end_col
    local on = (row > sr or (row == sr and col >= sc)) and (row < er or (row == er and col <= ec))
    if on or row < sr or (row == sr and col < sc) then
      return e, on
    end
  end
  return s.edits[1], false
end

--- Move the cursor to the start of the next suggested edit. Returns false when none is shown.
function M.jump(bufnr)
  local e = target(bufnr)
  if not e then
    return false
  end
  local m = vim.api.nvim_buf_get_extmark_by_id(bufnr, M.ns, e._mark, {})
  vim.api.nvim_win_set_cursor(0, { m[1] + 1, m[2] })
  return true
end

--- Apply the suggested edit under the cursor (or jump to the next one first).
--- Returns false when none is shown. The edit runs scheduled, so this can back an `expr` mapping.
function M.accept(bufnr)
  local e, on = target(bufnr)
  if not e then
    return false
  end
  vim.schedule(function()
    if not on then
      M.jump(bufnr)
      return
    end
    local s = state[bufnr]
    local m = vim.api.nvim_buf_get_extmark_by_id(bufnr, M.ns, e._mark, { details = true })
    local lines = vim.split(e.text, '\n', { plain = true })
    vim.api.nvim_buf_set_text(bufnr, m[1], m[2], m[3].end_row, m[3].end_col, lines)
    local client = s and vim.lsp.get_client_by_id(s.client_id)
    if client and e.command then
      util.exec_cmd(client, e.command, bufnr)
    end
    -- the other suggestions were made for the text before this edit: drop them too
    M.clear(bufnr)
  end)
  return true
end

--- Drop all suggestions. Returns false when none is shown.
function M.dismiss(bufnr)
  if not state[bufnr] then
    return false
  end
  M.clear(bufnr)
  return true
end

--- Ask the server for next-edit suggestions at the cursor.
function M.request(bufnr)
  local client = util.client(bufnr)
  if not client or unsupported[client.id] or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.textDocument.version = util.version(bufnr)
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  if asked[bufnr] == tick then
    return
  end
  asked[bufnr] = tick
  util.request(client, cfg.method, params, function(err, result)
    if err then
      if err.code == -32601 then -- MethodNotFound: this server has no next-edit yet
        unsupported[client.id] = true
      end
      return
    end
    if vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_buf_get_changedtick(bufnr) == tick then
      M.show(bufnr, client.id, result)
    end
  end, bufnr)
end

--- Whether the server said it does not know the next-edit request.
function M.unsupported(client_id)
  return unsupported[client_id] == true
end

function M.attach(bufnr, opts)
  cfg = vim.tbl_extend('force', cfg, opts or {})
  local group = vim.api.nvim_create_augroup('unmask.next_edit.' .. bufnr, { clear = true })
  -- typing drops the suggestions; they are asked for once the edit is done (back in Normal mode)
  vim.api.nvim_create_autocmd('TextChangedI', {
    group = group,
    buffer = bufnr,
    callback = function()
      M.clear(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'TextChanged', 'InsertLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function(ev)
      if ev.event == 'TextChanged' then
        M.clear(bufnr)
      end
      if not cfg.enabled then
        return
      end
      if timers[bufnr] then
        pcall(timers[bufnr].stop, timers[bufnr])
        pcall(timers[bufnr].close, timers[bufnr])
      end
      timers[bufnr] = vim.defer_fn(function()
        timers[bufnr] = nil
        if vim.api.nvim_buf_is_valid(bufnr) and not util.in_insert() then
          M.request(bufnr)
        end
      end, cfg.debounce_ms)
    end,
  })
end

function M.detach(bufnr)
  M.clear(bufnr)
  asked[bufnr] = nil
  pcall(vim.api.nvim_del_augroup_by_name, 'unmask.next_edit.' .. bufnr)
end

return M
