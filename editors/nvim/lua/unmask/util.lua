-- Small helpers shared by the renderers: the unmask client of a buffer, version-proof calls
-- into vim.lsp (0.10 uses `client.request(...)`, 0.11+ `client:request(...)`), LSP position
-- to byte column, and the buffer's LSP document version.
local M = {}

M.name = 'unmask'
M.has_011 = vim.fn.has('nvim-0.11') == 1

---@param bufnr integer
---@return vim.lsp.Client?
function M.client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = M.name })[1]
end

---@return integer? request_id
function M.request(client, method, params, handler, bufnr)
  local ok, id
  if M.has_011 then
    ok, id = client:request(method, params, handler, bufnr)
  else
    ok, id = client.request(method, params, handler, bufnr)
  end
  return ok and id or nil
end

function M.notify(client, method, params)
  if M.has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel(client, id)
  if M.has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

--- Run an item's command on the server (unmask counts an accepted suggestion this way).
function M.exec_cmd(client, command, bufnr)
  if not command then
    return
  end
  if M.has_011 then
    client:exec_cmd(command, { bufnr = bufnr })
  else
    client.request('workspace/executeCommand', { command = command.command, arguments = command.arguments }, nil, bufnr)
  end
end

--- The 0-based byte column of an LSP position in the buffer.
---@param pos {line: integer, character: integer}
function M.byte_col(bufnr, pos, encoding)
  local line = vim.api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  if encoding == 'utf-8' then
    return math.min(pos.character, #line)
  end
  local ok, col = pcall(vim.str_byteindex, line, encoding or 'utf-16', pos.character, false) -- 0.11+
  if not ok then
    ok, col = pcall(vim.str_byteindex, line, pos.character, encoding ~= 'utf-32') -- 0.10
  end
  return ok and col or #line
end

--- The document version vim.lsp last sent for the buffer.
function M.version(bufnr)
  return vim.lsp.util.buf_versions[bufnr]
end

--- Virtual-text chunks for `text`: the first line, the lines below (tabs shown as spaces).
---@return table first, table[] rest
function M.virt(text, hl, bufnr)
  local tab = string.rep(' ', vim.bo[bufnr].tabstop)
  local lines = vim.split(text, '\n', { plain = true })
  local rest = {}
  for i = 2, #lines do
    rest[#rest + 1] = { { (lines[i]:gsub('\t', tab)), hl } }
  end
  return { { (lines[1]:gsub('\t', tab)), hl } }, rest
end

--- The text of a list of virtual-text chunks (tests and :Unmask status read extmarks with it).
function M.chunks_text(chunks)
  local parts = {}
  for _, chunk in ipairs(chunks or {}) do
    parts[#parts + 1] = chunk[1]
  end
  return table.concat(parts)
end

--- The server's log file (`unmask serve` writes $XDG_STATE_HOME/unmask/lsp.log by default).
function M.log_file()
  local state = vim.env.XDG_STATE_HOME
  if not state or state == '' then
    state = vim.fs.joinpath(vim.uv.os_homedir(), '.local', 'state')
  end
  return vim.fs.joinpath(state, 'unmask', 'lsp.log')
end

function M.in_insert()
  return vim.api.nvim_get_mode().mode:sub(1, 1) == 'i'
end

return M
