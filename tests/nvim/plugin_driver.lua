-- Headless Neovim driver for the unmask.nvim plugin (editors/nvim), run by
-- tests/test_editors_nvim.py on Neovim 0.11 and 0.12. It loads the plugin the way lazy.nvim
-- would (editors/nvim on 'runtimepath', then require('unmask').setup{}), opens a Python file,
-- types in Insert mode, and records what a user would see: the live draft extmarks, the ghost
-- text, the buffer after pressing <Tab>, next-edit targets (from an injected answer; the real
-- server's: next_edit_driver.lua), and :checkhealth unmask. Everything goes to UNMASK_RESULT as JSON.
--
-- Environment: UNMASK_FILE (buffer to edit), UNMASK_LINE (1-based line to append to),
-- UNMASK_TYPE (text typed there), UNMASK_RESULT (JSON output path), UNMASK_SETUP (JSON options
-- for setup()). `unmask` must be on PATH.
local env = vim.env
local result = { responses = {}, drafts = {}, injected = {}, steps = {} }

local h = dofile(debug.getinfo(1, 'S').source:sub(2):match('(.*/)') .. 'harness.lua')
local resume, wait_until, sleep = h.resume, h.wait_until, h.sleep

local function stats(client, bufnr)
  local res = client:request_sync('unmask/stats', {}, 5000, bufnr)
  return assert(res and res.result, 'no answer to unmask/stats')
end

local function marks(bufnr, ns)
  return vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
end

--- What an extmark shows: its virtual text, lines below joined with newlines.
local function shown_text(mark)
  local util = require('unmask.util')
  local d = mark[4]
  local lines = { util.chunks_text(d.virt_text) }
  for _, vl in ipairs(d.virt_lines or {}) do
    lines[#lines + 1] = util.chunks_text(vl)
  end
  return table.concat(lines, '\n')
end

local function feed(keys)
  vim.api.nvim_feedkeys(vim.keycode(keys), 'mt', false)
end

local function test()
  result.nvim = tostring(vim.version())
  local unmask = require('unmask')
  unmask.setup(vim.json.decode(env.UNMASK_SETUP or '{}'))
  result.renderer = unmask.renderer()

  -- keep every inline completion answer (to compare the ghost text with what the server said)
  vim.api.nvim_create_autocmd('LspAttach', {
    callback = function(args)
      local client = assert(vim.lsp.get_client_by_id(args.data.client_id))
      local orig = client.request
      client.request = function(self, method, params, handler, bufnr)
        if method == 'textDocument/inlineCompletion' and handler then
          local inner = handler
          handler = function(e, res, ctx, cfg)
            table.insert(result.responses, {
              err = e and e.message or vim.NIL,
              result = res or vim.NIL,
              drafts_before = #result.drafts,
            })
            return inner(e, res, ctx, cfg)
          end
        end
        return orig(self, method, params, handler, bufnr)
      end
    end,
  })
  -- what the draft extmark shows right after each `unmask/draft` step
  vim.api.nvim_create_autocmd('User', {
    pattern = 'UnmaskDraft',
    callback = function(ev)
      local d = ev.data
      local m = marks(d.bufnr, require('unmask.drafts').ns)
      table.insert(result.injecting and result.injected or result.drafts, {
        step = d.step,
        text = d.text,
        done = d.done,
        mark = m[1] and shown_text(m[1]) or vim.NIL,
        row = m[1] and m[1][2] or vim.NIL,
        col = m[1] and m[1][3] or vim.NIL,
      })
    end,
  })

  vim.cmd.edit(env.UNMASK_FILE)
  local bufnr = vim.api.nvim_get_current_buf()
  assert(
    wait_until(function()
      return require('unmask.util').client(bufnr) ~= nil
    end, 30000),
    'unmask never attached'
  )
  local client = require('unmask.util').client(bufnr)
  -- the model loads in the background after start: wait for it, so the first keystroke counts
  wait_until(function()
    return stats(client, bufnr).model ~= ''
  end, 60000)
  result.model = stats(client, bufnr).model
  table.insert(result.steps, 'attached')

  -- type at the end of the line; the plugin asks after the pause
  local line = tonumber(env.UNMASK_LINE)
  vim.api.nvim_win_set_cursor(0, { line, 0 })
  feed('A' .. (env.UNMASK_TYPE or ''))
  assert(
    wait_until(function()
      return #result.responses > 0 and result.responses[#result.responses].result ~= vim.NIL
    end, 30000),
    'no inline completion answer'
  )
  result.mode = vim.api.nvim_get_mode().mode
  local ns = result.renderer == 'native' and vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
    or require('unmask.ghost').ns
  local ghost = {}
  local shown = wait_until(function()
    ghost = marks(bufnr, ns)
    return #ghost > 0
  end, 3000)
  result.draft_marks_after = #marks(bufnr, require('unmask.drafts').ns)
  result.line_before = vim.api.nvim_buf_get_lines(bufnr, line - 1, line, true)[1]
  if not shown then
    result.no_items = true -- the model said nothing here: nothing to show
  else
    table.insert(result.steps, 'ghost')
    result.ghost = shown_text(ghost[1])
    result.ghost_row, result.ghost_col = ghost[1][2], ghost[1][3]
    local before = stats(client, bufnr)
    feed('<Tab>')
    wait_until(function()
      return vim.api.nvim_buf_get_lines(bufnr, line - 1, line, true)[1] ~= result.line_before
    end, 3000)
    result.buffer = vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
    local after = before
    wait_until(function()
      after = stats(client, bufnr)
      return after.accepted > before.accepted
    end, 3000)
    result.accepted = after.accepted - before.accepted
    table.insert(result.steps, 'accepted')
  end
  -- drafts as the server streams them (injected: how many steps the real model takes varies)
  local cursor = vim.api.nvim_win_get_cursor(0)
  result.inject_at = { cursor[1] - 1, cursor[2] }
  result.injecting = true
  for i, text in ipairs({ 'le', 'len(p', 'len(path)\n        x', 'len(path)' }) do
    require('unmask.drafts').handler(nil, {
      textDocument = { uri = vim.uri_from_bufnr(bufnr), version = require('unmask.util').version(bufnr) },
      position = { line = cursor[1] - 1, character = cursor[2] },
      requestId = 1,
      step = i,
      text = text,
      confidence = 0.5,
      elapsedMs = 10 * i,
      done = i == 4,
    }, { client_id = client.id })
  end
  result.injecting = false
  vim.cmd('stopinsert')
  sleep(50)

  -- <Tab> with nothing shown is still a Tab
  vim.cmd.enew()
  vim.bo.buftype = 'nofile'
  feed('ix<Tab>y<Esc>')
  sleep(100)
  result.plain_tab_buffer = vim.api.nvim_buf_get_lines(0, 0, -1, true)
  vim.cmd.buffer(bufnr)

  -- next-edit, from an injected answer shaped like textDocument/copilotInlineEdit's
  local next_edit = require('unmask.next_edit')
  local version = require('unmask.util').version(bufnr)
  local uri = vim.uri_from_bufnr(bufnr)
  local fake = {
    edits = {
      {
        text = 'count_python_lines',
        textDocument = { uri = uri, version = version },
        range = { start = { line = 13, character = 4 }, ['end'] = { line = 13, character = 15 } },
      },
      {
        text = 'stale',
        textDocument = { uri = uri, version = version - 1 },
        range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = 2 } },
      },
    },
  }
  vim.cmd('stopinsert')
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  result.next_edit_shown = next_edit.show(bufnr, client.id, fake)
  local ne = marks(bufnr, next_edit.ns)
  result.next_edit_marks = {}
  for _, m in ipairs(ne) do
    table.insert(result.next_edit_marks, {
      row = m[2],
      col = m[3],
      end_row = m[4].end_row or vim.NIL,
      end_col = m[4].end_col or vim.NIL,
      hl = m[4].hl_group or vim.NIL,
      text = m[4].virt_text and shown_text(m) or vim.NIL,
    })
  end
  feed('<Tab>') -- jump to the target
  sleep(100)
  result.next_edit_cursor_after_jump = vim.api.nvim_win_get_cursor(0)
  feed('<Tab>') -- apply it
  wait_until(function()
    return not next_edit.visible(bufnr)
  end, 2000)
  result.next_edit_line = vim.api.nvim_buf_get_lines(bufnr, 13, 14, true)[1]
  result.next_edit_marks_after = #marks(bufnr, next_edit.ns)
  -- <Esc> dismisses
  for _, e in ipairs(fake.edits) do
    e.textDocument.version = require('unmask.util').version(bufnr)
  end
  result.next_edit_shown_again = next_edit.show(bufnr, client.id, fake)
  feed('<Esc>')
  sleep(100)
  result.next_edit_marks_after_dismiss = #marks(bufnr, next_edit.ns)
  table.insert(result.steps, 'next_edit')

  -- :checkhealth unmask
  vim.cmd('checkhealth unmask')
  sleep(200)
  result.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  table.insert(result.steps, 'health')
end

h.run(result, test)
