-- Live denoising drafts: renders each `unmask/draft` notification (one per denoising step,
-- sent while the model works; docs/protocol.md) as ghost text at the request's cursor, in its
-- own highlight (UnmaskDraft), until the final suggestion replaces it.
-- Fires `User UnmaskDraft` after each step (data: bufnr, step, text, confidence, elapsed_ms, done).
local util = require('unmask.util')

local M = {}
M.ns = vim.api.nvim_create_namespace('unmask.draft')

--- Elapsed model time of the last finished draft per buffer (for :Unmask status).
M.last_ms = {}

local native_ns -- Neovim 0.12's inline completion namespace: its stale ghost gives way to a draft

function M.clear(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Handler for the `unmask/draft` notification.
function M.handler(_, params, ctx)
  if not params or not params.textDocument then
    return
  end
  local bufnr = vim.uri_to_bufnr(params.textDocument.uri)
  if not vim.api.nvim_buf_is_loaded(bufnr) then
    return
  end
  if params.done then
    M.last_ms[bufnr] = params.elapsedMs
  end
  -- a draft for an older version of the buffer, or after leaving Insert mode, is news about nothing
  if params.textDocument.version ~= util.version(bufnr) or not util.in_insert() or params.done then
    M.clear(bufnr)
  else
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    local row = params.position.line
    local col = util.byte_col(bufnr, params.position, client and client.offset_encoding)
    local first, rest = util.virt(params.text or '', 'UnmaskDraft', bufnr)
    M.clear(bufnr)
    native_ns = native_ns or vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
    if native_ns then
      vim.api.nvim_buf_clear_namespace(bufnr, native_ns, 0, -1)
    end
    require('unmask.ghost').hide(bufnr)
    pcall(vim.api.nvim_buf_set_extmark, bufnr, M.ns, row, col, {
      virt_text = first,
      virt_text_pos = 'inline',
      virt_lines = #rest > 0 and rest or nil,
      hl_mode = 'combine',
    })
  end
  vim.api.nvim_exec_autocmds('User', {
    pattern = 'UnmaskDraft',
    modeline = false,
    data = {
      bufnr = bufnr,
      step = params.step,
      text = params.text,
      confidence = params.confidence,
      elapsed_ms = params.elapsedMs,
      done = params.done,
    },
  })
end

return M
