-- unmask.nvim's options: the documented defaults (see :help unmask-config) and their merge
-- with what the user passes to setup(). It knows option names only, nothing about LSP.
local M = {}

---@class unmask.Config
M.defaults = {
  -- The server command. nil: `unmask serve`, found on PATH (a venv's bin/ on PATH is enough).
  cmd = nil,
  -- Filetypes to attach to. nil: every filetype, in buffers that hold a file.
  filetypes = nil,
  -- Files that mark a project root (the workspace the server indexes). None found: the file's folder.
  root_markers = { '.git', 'pyproject.toml', 'setup.py', 'package.json', 'Cargo.toml', 'go.mod' },
  -- Server settings, sent as initializationOptions and as the `unmask` settings section:
  -- latencyBudgetMs, invokedBudgetMs, minConfidence, steps, threshold, modelPath,
  -- enabledLanguages, nextEdit.minConfidence, ... (docs/protocol.md in the unmask repository).
  -- Unset keys keep the server's defaults.
  settings = {},
  -- Ghost text renderer: 'auto' (Neovim's own vim.lsp.inline_completion on 0.12+, the plugin's
  -- extmarks before), 'native' or 'extmarks'.
  ghost = 'auto',
  -- Show every denoising step while the model works (the server streams `unmask/draft`).
  drafts = true,
  -- extmarks renderer: milliseconds after the last keystroke before asking the server.
  debounce_ms = 75,
  -- Keys; false turns one off. Insert-mode keys fall back to their usual meaning when no
  -- suggestion is shown; so do the normal-mode next-edit keys.
  keymaps = {
    accept = '<Tab>', -- insert the ghost text
    dismiss = '<C-]>', -- hide the ghost text (the server stops offering it)
    trigger = '<M-\\>', -- ask now (no confidence gate, longer budget)
    next_edit_accept = '<Tab>', -- normal mode: jump to the suggested edit; there, apply it
    next_edit_dismiss = '<Esc>', -- normal mode: drop the next-edit suggestions
  },
  -- Next-edit suggestions (edits elsewhere that carry on the one you just made), asked for
  -- `debounce_ms` after an edit, back in Normal mode. The server's side is tuned with the
  -- settings nextEdit.enabled, nextEdit.budgetMs and nextEdit.minConfidence (`settings` above).
  next_edit = {
    enabled = true,
    method = 'textDocument/copilotInlineEdit',
    debounce_ms = 300,
  },
}

--- The defaults with `opts` merged on top (tables merge deeply; lists are replaced).
---@param opts? table
---@return unmask.Config
function M.merge(opts)
  local cfg = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  for _, key in ipairs({ 'cmd', 'filetypes', 'root_markers' }) do
    if opts and opts[key] ~= nil then
      cfg[key] = opts[key] -- lists: the user's replaces ours, never merged index by index
    end
  end
  if cfg.keymaps == false then
    cfg.keymaps = {}
  end
  return cfg
end

return M
