-- The routes file fuzz_dto.c loads: bodies, path parameters and query strings with schemas that use every kind of
-- dto constraint, and handlers that echo what validation kept (so encoding the cleaned value is fuzzed as well).
-- Nothing here waits or touches Kafka or the store: the app runs in check mode.

local Address = dto.object({
  street = dto.string { not_empty = true, max_length = 80 },
  city = dto.string { length = { 2, 40 } },
  zip = dto.string { pattern = { lua = "^%d%d%d%d%d$", name = "^\\d{5}$" }, optional = true },
}, { unknown = "reject" })

local Item = dto.object {
  { "sku", dto.string { pattern = "^[A-Z][A-Z0-9%-]*$", min_length = 3 } },
  { "qty", dto.integer { min = 1, max = 1000 } },
  { "price", dto.number { min = 0 } },
  { "tags", dto.array(dto.string { not_empty = true }, { max_size = 5, optional = true }) },
}

local Order = dto.object {
  { "name", dto.string { not_empty = true, max_length = 200 } },
  { "email", dto.email { not_empty = true } },
  { "age", dto.integer { min = 0, max = 150, optional = true } },
  { "vip", dto.boolean { optional = true } },
  { "kind", dto.enum { "retail", "wholesale", 1, true } },
  { "address", Address },
  { "items", dto.array(Item, { min_size = 1, max_size = 20 }) },
  { "matrix", dto.array(dto.array(dto.number {}), { optional = true }) },
  { "meta", dto.any { optional = true } },
}

local Loose = dto.object({
  id = dto.integer {},
  note = dto.string { optional = true },
  extra = dto.object({ level = dto.number { min = -1, max = 1 } }, { unknown = "allow", optional = true }),
}, { unknown = "allow" })

local Scalars = dto.array(dto.enum { values = { "a", "b", 3 } }, { min_size = 1 })

local Query = dto.object {
  q = dto.string { max_length = 50, optional = true },
  limit = dto.integer { min = 1, max = 100, optional = true },
  ratio = dto.number { optional = true },
  flag = dto.boolean { optional = true },
  kind = dto.enum { "x", 2, false, optional = true },
}

local Params = dto.object { id = dto.integer { min = 1 }, slug = dto.string { pattern = "^[%w%-]+$" } }

http.post("/orders", { body = Order }, function(req) return 201, req.body end)
http.post("/loose", { body = Loose }, function(req) return 200, req.body end)
http.post("/scalars", { body = Scalars }, function(req) return 200, { n = #req.body, items = req.body } end)
http.post("/any", function(req) return 200, { got = req.body } end) -- no schema: decoded when JSON
http.get("/search", { query = Query }, function(req) return 200, req.query end)
http.get("/things/:id/:slug", { params = Params }, function(req) return 200, req.params end)
