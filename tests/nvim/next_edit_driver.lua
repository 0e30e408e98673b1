-- Headless Neovim driver for next-edit suggestions from the real server, run by
-- tests/test_editors_nvim_nes.py on Neovim 0.11 and 0.12. It loads the plugin as lazy.nvim would,
-- and in three fresh Python buffers (each with its own edit history on the server):
--
--   dismiss  rename a variable by typing, wait for the suggestions, <Esc> drops them;
--   accept   rename it, then <Tab> (jump) and <Tab> (apply) while suggestions come, recording
--            each round: the answer shown, the cursor after the jump, the buffer before and after;
--   quality  the same with the server's default nextEdit.minConfidence, until it has nothing more.
--
-- Every textDocument/copilotInlineEdit answer is recorded with the buffer's changedtick it was
-- asked for. Everything goes to UNMASK_RESULT as JSON.
--
-- Environment: UNMASK_FILES (JSON {dismiss, accept, quality}: paths of copies of the scenario),
-- UNMASK_EDIT (JSON {line, col, keys}: 1-based line, 0-based byte column where `a` appends the
-- keys), UNMASK_RESULT, UNMASK_SETUP (JSON options for setup()), UNMASK_QUALITY_SETTINGS (JSON
-- settings sent before the quality phase), UNMASK_ROUNDS (most accept rounds). `unmask` on PATH.
local env = vim.env
local result = { answers = {}, phases = {}, steps = {} }
local METHOD = 'textDocument/copilotInlineEdit'

local h = dofile(debug.getinfo(1, 'S').source:sub(2):match('(.*/)') .. 'harness.lua')
local resume, wait_until, sleep = h.resume, h.wait_until, h.sleep

local function feed(keys)
  vim.api.nvim_feedkeys(vim.keycode(keys), 'mt', false)
end

local function stats(client, bufnr)
  local res = client:request_sync('unmask/stats', {}, 5000, bufnr)
  return assert(res and res.result, 'no answer to unmask/stats')
end

local function lines(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)
end

--- The next-edit extmarks: targets (with their ranges) and the proposals' virtual text.
local function marks(bufnr)
  local util = require('unmask.util')
  local out = { targets = {}, proposals = {} }
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(bufnr, require('unmask.next_edit').ns, 0, -1, { details = true })) do
    local d = m[4]
    if d.hl_group == 'UnmaskNextEditTarget' then
      table.insert(out.targets, { row = m[2], col = m[3], end_row = d.end_row, end_col = d.end_col })
    elseif d.virt_text then
      table.insert(out.proposals, util.chunks_text(d.virt_text))
    end
  end
  return out
end

--- The answer to the request asked at the buffer's current changedtick (waits for it).
local function answer_now(bufnr, ms)
  local found
  wait_until(function()
    local tick = vim.api.nvim_buf_get_changedtick(bufnr)
    for i = #result.answers, 1, -1 do
      local a = result.answers[i]
      if a.bufnr == bufnr and a.tick == tick and a.done then
        found = a
        return true
      end
    end
    return false
  end, ms)
  return found
end

--- Open a scenario copy, wait for the server, and make the edit by typing it.
local function open_and_edit(path)
  vim.cmd.edit(path)
  local bufnr = vim.api.nvim_get_current_buf()
  assert(
    wait_until(function()
      return require('unmask.util').client(bufnr) ~= nil
    end, 30000),
    'unmask never attached to ' .. path
  )
  local edit = vim.json.decode(env.UNMASK_EDIT)
  vim.api.nvim_win_set_cursor(0, { edit.line, edit.col })
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  feed('a' .. edit.keys .. '<Esc>')
  assert(
    wait_until(function()
      return vim.api.nvim_get_mode().mode == 'n' and vim.api.nvim_buf_get_changedtick(bufnr) > tick
    end, 5000),
    'the edit was not typed'
  )
  return bufnr
end

--- <Tab> to the next target, <Tab> to apply it; one record per round, until nothing is shown.
local function accept_rounds(bufnr, phase, rounds)
  local next_edit = require('unmask.next_edit')
  local client = require('unmask.util').client(bufnr)
  phase.rounds = {}
  phase.first = answer_now(bufnr, 20000)
  for _ = 1, rounds do
    local shown = answer_now(bufnr, 20000)
    if not shown or not wait_until(function()
      return next_edit.visible(bufnr)
    end, 2000) then
      break
    end
    local round = { answer = shown, before = lines(bufnr), marks = marks(bufnr) }
    local before = stats(client, bufnr)
    feed('<Tab>') -- jump to the next target
    sleep(100)
    round.cursor_after_jump = vim.api.nvim_win_get_cursor(0)
    round.visible_after_jump = next_edit.visible(bufnr)
    local tick = vim.api.nvim_buf_get_changedtick(bufnr)
    if round.visible_after_jump then -- (the cursor was on a target already: the first <Tab> applied it)
      feed('<Tab>') -- apply it
    end
    wait_until(function()
      return vim.api.nvim_buf_get_changedtick(bufnr) ~= tick and not next_edit.visible(bufnr)
    end, 3000)
    round.after = lines(bufnr)
    local after = before
    wait_until(function()
      after = stats(client, bufnr)
      return after.nextEditAccepted > before.nextEditAccepted
    end, 3000)
    round.accepted = after.nextEditAccepted - before.nextEditAccepted
    table.insert(phase.rounds, round)
  end
  phase.final = lines(bufnr)
end

local function test()
  result.nvim = tostring(vim.version())
  local unmask = require('unmask')
  unmask.setup(vim.json.decode(env.UNMASK_SETUP or '{}'))
  result.renderer = unmask.renderer()
  local files = vim.json.decode(env.UNMASK_FILES)
  local rounds = tonumber(env.UNMASK_ROUNDS or '6')

  -- record every next-edit answer, with the changedtick it was asked at
  vim.api.nvim_create_autocmd('LspAttach', {
    callback = function(args)
      local client = assert(vim.lsp.get_client_by_id(args.data.client_id))
      if client.name ~= 'unmask' or client._unmask_wrapped then
        return
      end
      client._unmask_wrapped = true
      local orig = client.request
      client.request = function(self, method, params, handler, bufnr)
        if method == METHOD and handler then
          local rec = { bufnr = bufnr, tick = vim.api.nvim_buf_get_changedtick(bufnr), params = params, done = false }
          table.insert(result.answers, rec)
          local inner = handler
          handler = function(e, res, ctx, cfg)
            rec.err = e and { code = e.code, message = e.message } or vim.NIL
            rec.result = res or vim.NIL
            rec.done = true
            return inner(e, res, ctx, cfg)
          end
        end
        return orig(self, method, params, handler, bufnr)
      end
    end,
  })

  -- dismiss: suggestions appear after the edit; <Esc> drops them
  local bufnr = open_and_edit(files.dismiss)
  local client = require('unmask.util').client(bufnr)
  result.model = stats(client, bufnr).model
  result.capabilities = client.server_capabilities.experimental or vim.NIL
  local next_edit = require('unmask.next_edit')
  local phase = { answer = answer_now(bufnr, 30000) }
  phase.shown = wait_until(function()
    return next_edit.visible(bufnr)
  end, 2000)
  phase.marks = marks(bufnr)
  feed('<Esc>')
  sleep(100)
  phase.marks_after_esc = marks(bufnr)
  phase.visible_after_esc = next_edit.visible(bufnr)
  result.phases.dismiss = phase
  table.insert(result.steps, 'dismiss')

  -- accept: Tab, Tab, ... through what the server proposes
  bufnr = open_and_edit(files.accept)
  phase = {}
  accept_rounds(bufnr, phase, rounds)
  result.phases.accept = phase
  table.insert(result.steps, 'accept')

  -- quality: the server's default gate
  client:notify('workspace/didChangeConfiguration', { settings = vim.json.decode(env.UNMASK_QUALITY_SETTINGS) })
  stats(client, bufnr) -- a round trip: the settings are applied
  bufnr = open_and_edit(files.quality)
  phase = {}
  accept_rounds(bufnr, phase, rounds)
  result.phases.quality = phase
  table.insert(result.steps, 'quality')
  result.stats = stats(client, bufnr)

  vim.cmd('checkhealth unmask')
  sleep(200)
  result.health = vim.api.nvim_buf_get_lines(0, 0, -1, false)
end

h.run(result, test)
