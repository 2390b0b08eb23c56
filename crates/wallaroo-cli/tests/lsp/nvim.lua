-- Drives `wallaroo lsp` from Neovim's built-in LSP client (run headless by tests/lsp.rs):
-- opens the spec, waits for diagnostics, asks for completion at a position, formats, and
-- writes what it saw as JSON to $LSP_OUT.
local bin = os.getenv("WALLAROO_BIN")
local file = os.getenv("SPEC_FILE")
local out = os.getenv("LSP_OUT")
local line = tonumber(os.getenv("COMPLETE_LINE"))
local character = tonumber(os.getenv("COMPLETE_CHAR"))

vim.cmd("edit " .. file)
local buf = vim.api.nvim_get_current_buf()
local id = vim.lsp.start_client({
  name = "wallaroo",
  cmd = { bin, "lsp" },
  root_dir = vim.fn.fnamemodify(file, ":h"),
})
vim.lsp.buf_attach_client(buf, id)
local result = { diagnostics = {}, completion = {}, hover = "" }

vim.wait(20000, function() return #vim.diagnostic.get(buf) > 0 end, 20)
for _, d in ipairs(vim.diagnostic.get(buf)) do
  table.insert(result.diagnostics, { line = d.lnum, col = d.col, message = d.message })
end

local client = vim.lsp.get_client_by_id(id)
local doc = { uri = vim.uri_from_bufnr(buf) }
local completion = client.request_sync("textDocument/completion",
  { textDocument = doc, position = { line = line, character = character } }, 10000, buf)
for _, item in ipairs((completion and completion.result) or {}) do
  table.insert(result.completion, item.label)
end

local hover = client.request_sync("textDocument/hover",
  { textDocument = doc, position = { line = line, character = 3 } }, 10000, buf)
if hover and hover.result and hover.result.contents then
  result.hover = hover.result.contents.value or ""
end

local formatting = client.request_sync("textDocument/formatting",
  { textDocument = doc, options = { tabSize = 2, insertSpaces = true } }, 10000, buf)
if formatting and formatting.result then
  vim.lsp.util.apply_text_edits(formatting.result, buf, "utf-16")
end
result.formatted = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n") .. "\n"

vim.fn.writefile({ vim.fn.json_encode(result) }, out)
client.stop()
vim.cmd("qa!")
