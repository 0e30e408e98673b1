-- Shared by the headless Neovim drivers in this folder (loaded with dofile). A driver's test body
-- runs in a coroutine that yields to Neovim's main loop while it waits, so typed keys and LSP
-- answers get processed; when the body ends (or fails, with its traceback as `error`) the
-- driver's result table is written as JSON to UNMASK_RESULT and Neovim quits.
--
-- It knows nothing about unmask: no plugin, server or buffer logic.
local M = {}
local co, result

local function finish(err)
  result.error = err or vim.NIL
  local f = assert(io.open(vim.env.UNMASK_RESULT, 'w'))
  f:write(vim.json.encode(result))
  f:close()
  vim.cmd('qa!')
end

--- Continue the test body (from a timer or a callback), passing values to its yield.
function M.resume(...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    finish(debug.traceback(co, err))
  elseif coroutine.status(co) == 'dead' then
    finish(nil)
  end
end

--- Yield to the event loop until cond() holds (or ms pass); returns whether it held.
function M.wait_until(cond, ms)
  local deadline = vim.uv.now() + ms
  while not cond() do
    if vim.uv.now() > deadline then
      return false
    end
    vim.defer_fn(M.resume, 20)
    coroutine.yield()
  end
  return true
end

function M.sleep(ms)
  M.wait_until(function()
    return false
  end, ms)
end

--- Run test() once the editor is up; `res` is written to UNMASK_RESULT when it ends.
function M.run(res, test)
  result = res
  co = coroutine.create(test)
  vim.schedule(M.resume)
end

return M
