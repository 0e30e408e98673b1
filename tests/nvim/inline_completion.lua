-- Headless Neovim (0.12+) test driver: start unmask through vim.lsp, type in insert mode,
-- wait for the inline completion ghost text, accept it, and write what happened as JSON.
--
-- Environment: UNMASK_PYTHON (interpreter with unmask installed), UNMASK_FILE (the buffer to
-- edit), UNMASK_CANDIDATES (JSON [[line, typed], ...]: 1-based lines to append to, and what to
-- type there, tried in order), UNMASK_RESULT (JSON output path), UNMASK_LOG (server log file).
--
-- Keys must reach Neovim through its main loop (typeahead), so the test runs in a coroutine
-- that yields to the loop while it waits.
local env = vim.env
local result = { responses = {} }

local h = dofile(debug.getinfo(1, 'S').source:sub(2):match('(.*/)') .. 'harness.lua')
local resume, wait_until = h.resume, h.wait_until

--- An LSP request from inside the coroutine.
local function request(client, method, params, bufnr)
  client:request(method, params, function(err, res)
    vim.schedule(function()
      resume(err, res)
    end)
  end, bufnr)
  local err, res = coroutine.yield()
  assert(not err, vim.inspect(err))
  return res
end

local function test()
  assert(vim.lsp.inline_completion, 'this Neovim has no vim.lsp.inline_completion (needs 0.12)')
  result.nvim = tostring(vim.version())

  vim.lsp.config('unmask', {
    cmd = { env.UNMASK_PYTHON, '-m', 'unmask.lsp.cli', 'serve', '--log-file', env.UNMASK_LOG },
    filetypes = { 'python' },
    -- show whatever the model says, and let it finish its steps: the outcome does not hang on timing
    init_options = { minConfidence = 0, latencyBudgetMs = 3000 },
  })
  vim.lsp.enable('unmask')

  -- record every inline completion response the client receives
  vim.api.nvim_create_autocmd('LspAttach', {
    callback = function(args)
      local client = assert(vim.lsp.get_client_by_id(args.data.client_id))
      local orig = client.request
      client.request = function(self, method, params, handler, bufnr)
        if method == 'textDocument/inlineCompletion' and handler then
          local inner = handler
          handler = function(e, res, ctx, cfg)
            table.insert(result.responses, { err = e and e.message or vim.NIL, result = res or vim.NIL })
            return inner(e, res, ctx, cfg)
          end
        end
        return orig(self, method, params, handler, bufnr)
      end
    end,
  })

  vim.cmd.edit(env.UNMASK_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  assert(
    wait_until(function()
      return #vim.lsp.get_clients({ bufnr = bufnr, name = 'unmask' }) > 0
    end, 30000),
    'unmask never attached'
  )
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'unmask' })[1]
  vim.lsp.inline_completion.enable(true, { bufnr = bufnr })

  -- for each candidate cursor: end of that line, Insert mode, type; the client asks automatically
  -- after its debounce. A model may have nothing to say at a cursor: then restore and try the next.
  local original = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
  local line
  for _, cand in ipairs(vim.json.decode(env.UNMASK_CANDIDATES)) do
    line = cand[1]
    local seen = #result.responses
    vim.api.nvim_win_set_cursor(0, { line, 0 })
    vim.api.nvim_feedkeys('A' .. cand[2], 'nt', false)
    assert(
      wait_until(function()
        return #result.responses > seen
      end, 30000),
      'no inline completion response'
    )
    result.mode = vim.api.nvim_get_mode().mode
    local last = result.responses[#result.responses]
    if last.result ~= vim.NIL and #(last.result.items or {}) > 0 then
      result.line = line
      break
    end
    vim.api.nvim_feedkeys(vim.keycode('<Esc>'), 'nt', false)
    assert(wait_until(function()
      return vim.api.nvim_get_mode().mode == 'n'
    end, 5000))
    vim.api.nvim_buf_set_lines(bufnr, 0, -1, true, original)
  end
  if not result.line then
    result.no_items = true -- the model said nothing at any cursor: nothing to show (the test reports it)
    return
  end
  local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  local marks = {}
  local shown = wait_until(function()
    marks = vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
    return #marks > 0
  end, 5000)
  assert(shown, 'no ghost text appeared; responses: ' .. vim.inspect(result.responses))
  local d = marks[1][4]
  local function join(chunks)
    local parts = {}
    for _, chunk in ipairs(chunks or {}) do
      table.insert(parts, chunk[1])
    end
    return table.concat(parts)
  end
  local ghost_lines = { join(d.virt_text) }
  for _, vl in ipairs(d.virt_lines or {}) do
    table.insert(ghost_lines, join(vl))
  end
  result.ghost = table.concat(ghost_lines, '\n')
  result.ghost_row, result.ghost_col = marks[1][2], marks[1][3]
  result.line_before = vim.api.nvim_buf_get_lines(bufnr, line - 1, line, true)[1]

  local before = request(client, 'unmask/stats', {}, bufnr)
  assert(vim.lsp.inline_completion.get({ bufnr = bufnr }), 'nothing to accept')
  local after = before
  wait_until(function()
    return false
  end, 200)
  result.buffer = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
  for _ = 1, 50 do
    after = request(client, 'unmask/stats', {}, bufnr)
    if after.accepted > before.accepted then
      break
    end
    wait_until(function()
      return false
    end, 50)
  end
  result.accepted = after.accepted - before.accepted
  vim.cmd('stopinsert')
end

h.run(result, test)
