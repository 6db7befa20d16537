-- busted spec for scripts/switchyard/dto.lua (run: busted --lua=luajit tests/spec/dto_spec.lua)
local dto = require("switchyard.dto")
local cjson = require("cjson")

local NULL = cjson.null

-- validate and return the messages (nil when valid)
local function errors_of(schema, value, opts)
  local cleaned, messages = schema:validate(value, opts)
  if messages then
    assert.is_nil(cleaned)
  end
  return messages
end

-- validate, expect success, return the cleaned value
local function cleaned_of(schema, value, opts)
  local cleaned, messages = schema:validate(value, opts)
  assert.is_nil(messages, messages and table.concat(messages, " | "))
  return cleaned
end

-- the message of the error raised by fn(...)
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function deep_copy(t)
  if type(t) ~= "table" then
    return t
  end
  local c = {}
  for k, v in pairs(t) do
    c[k] = deep_copy(v)
  end
  return c
end

describe("switchyard.dto", function()
  describe("module", function()
    it("returns a table of constructors and creates no globals", function()
      for _, name in ipairs({ "string", "number", "integer", "boolean", "email", "enum", "array",
        "object", "any", "describe", "is_schema" }) do
        assert.is_function(dto[name], name)
      end
      local before = {}
      for k in pairs(_G) do
        before[k] = true
      end
      package.loaded["switchyard.dto"] = nil
      local fresh = require("switchyard.dto")
      package.loaded["switchyard.dto"] = dto
      assert.is_table(fresh)
      for k in pairs(_G) do
        assert.is_true(before[k], "new global " .. tostring(k))
      end
    end)

    it("is_schema tells schemas from other values", function()
      assert.is_true(dto.is_schema(dto.string()))
      assert.is_true(dto.is_schema(dto.object {}))
      assert.is_false(dto.is_schema({}))
      assert.is_false(dto.is_schema({ kind = "string" }))
      assert.is_false(dto.is_schema(nil))
      assert.is_false(dto.is_schema("string"))
    end)

    it("exposes kind and optional on every schema", function()
      local cases = {
        string = dto.string(), number = dto.number(), integer = dto.integer(),
        boolean = dto.boolean(), email = dto.email(), enum = dto.enum { "a" },
        array = dto.array(dto.string()), object = dto.object {}, any = dto.any(),
      }
      for kind, schema in pairs(cases) do
        assert.are.equal(kind, schema.kind)
        assert.is_false(schema.optional)
      end
      assert.is_true(dto.string { optional = true }.optional)
      assert.is_true(dto.object({}, { optional = true }).optional)
    end)
  end)

  describe("the reference CreateUserDto", function()
    local CreateUserDto = dto.object {
      name = dto.string { not_empty = true },
      email = dto.email { not_empty = true },
    }

    it("accepts a valid body", function()
      local body = cleaned_of(CreateUserDto, { name = "Ada", email = "ada@example.com" })
      assert.are.same({ name = "Ada", email = "ada@example.com" }, body)
    end)

    it("lists every failure of an empty body, fields in alphabetical order", function()
      assert.are.same({
        "email should not be empty",
        "email must be an email",
        "name should not be empty",
        "name must be a string",
      }, errors_of(CreateUserDto, {}))
    end)

    it("reports a bad email as NestJS does", function()
      assert.are.same({ "email must be an email" },
        errors_of(CreateUserDto, { name = "Ada", email = "not-an-email" }))
    end)

    it("treats JSON null like a missing property", function()
      local body = cjson.decode('{"name": null, "email": null}')
      assert.are.same({
        "email should not be empty",
        "email must be an email",
        "name should not be empty",
        "name must be a string",
      }, errors_of(CreateUserDto, body))
    end)

    it("strips unknown keys by default", function()
      local body = cleaned_of(CreateUserDto, { name = "Ada", email = "ada@example.com", admin = true })
      assert.is_nil(body.admin)
      assert.are.same({ name = "Ada", email = "ada@example.com" }, body)
    end)
  end)

  describe("dto.string", function()
    it("accepts a string and returns it", function()
      assert.are.equal("hello", cleaned_of(dto.string(), "hello"))
      assert.are.equal("", cleaned_of(dto.string(), ""))
    end)

    it("rejects a non-string with the IsString message", function()
      local s = dto.object { name = dto.string() }
      assert.are.same({ "name must be a string" }, errors_of(s, { name = 42 }))
      assert.are.same({ "name must be a string" }, errors_of(s, { name = true }))
      assert.are.same({ "name must be a string" }, errors_of(s, { name = { "x" } }))
    end)

    it("not_empty rejects the empty string but not blanks", function()
      local s = dto.object { name = dto.string { not_empty = true } }
      assert.are.same({ "name should not be empty" }, errors_of(s, { name = "" }))
      assert.are.same({ name = "  " }, cleaned_of(s, { name = "  " }))
    end)

    it("not_empty is satisfied by a non-string value, which still fails the type", function()
      local s = dto.object { name = dto.string { not_empty = true } }
      assert.are.same({ "name must be a string" }, errors_of(s, { name = 0 }))
    end)

    it("min_length uses the MinLength message", function()
      local s = dto.object { name = dto.string { min_length = 3 } }
      assert.are.same({ "name must be longer than or equal to 3 characters" },
        errors_of(s, { name = "ab" }))
      assert.are.same({ name = "abc" }, cleaned_of(s, { name = "abc" }))
    end)

    it("max_length uses the MaxLength message", function()
      local s = dto.object { name = dto.string { max_length = 3 } }
      assert.are.same({ "name must be shorter than or equal to 3 characters" },
        errors_of(s, { name = "abcd" }))
      assert.are.same({ name = "abc" }, cleaned_of(s, { name = "abc" }))
    end)

    it("length reports the bound it breaks, as class-validator's Length", function()
      local s = dto.object { code = dto.string { length = { 2, 4 } } }
      assert.are.same({ "code must be longer than or equal to 2 characters" },
        errors_of(s, { code = "a" }))
      assert.are.same({ "code must be shorter than or equal to 4 characters" },
        errors_of(s, { code = "abcde" }))
      assert.are.same({ code = "abcd" }, cleaned_of(s, { code = "abcd" }))
    end)

    it("length on a missing or non-string value gives Length's messages", function()
      local s = dto.object { code = dto.string { length = { 2, 4 } } }
      assert.are.same({
        "code must be a string",
        "code must be longer than or equal to 2 characters",
      }, errors_of(s, {}))
      assert.are.same({
        "code must be a string",
        "code must be longer than or equal to 2 and shorter than or equal to 4 characters",
      }, errors_of(s, { code = 123 }))
    end)

    it("length accepts the { min = , max = } form too", function()
      local s = dto.string { length = { min = 1, max = 2 } }
      assert.are.same({ 1, 2 }, s.length)
      assert.are.same({ "body must be shorter than or equal to 2 characters" }, errors_of(s, "abc"))
    end)

    it("counts characters as UTF-8 code points", function()
      local s = dto.object { name = dto.string { max_length = 3 } }
      assert.are.same({ name = "héé" }, cleaned_of(s, { name = "héé" }))
      assert.are.same({ name = "日本語" }, cleaned_of(s, { name = "日本語" }))
      assert.are.same({ "name must be shorter than or equal to 3 characters" },
        errors_of(s, { name = "日本語!" }))
      assert.are.equal(1, dto._utf8_len("\240\159\152\128")) -- U+1F600
    end)

    it("rejects invalid UTF-8", function()
      local s = dto.object { name = dto.string { max_length = 10 } }
      for _, bad in ipairs({ "\255", "a\192\128", "\237\160\128", "\244\144\128\128", "\226\130", "\128" }) do
        assert.are.same({ "name must be a valid UTF-8 string" }, errors_of(s, { name = bad }))
      end
    end)

    it("pattern (a Lua pattern) uses the Matches message", function()
      local s = dto.object { slug = dto.string { pattern = "^[%l%d%-]+$" } }
      assert.are.same({ slug = "my-post-1" }, cleaned_of(s, { slug = "my-post-1" }))
      assert.are.same({ "slug must match /^[%l%d%-]+$/ regular expression" },
        errors_of(s, { slug = "My Post" }))
    end)

    it("a pattern is unanchored unless it says so", function()
      local s = dto.string { pattern = "%d" }
      assert.are.equal("abc1", cleaned_of(s, "abc1"))
    end)

    it("a named pattern shows its name in the message", function()
      local s = dto.object { slug = dto.string { pattern = { lua = "^%l+$", name = "^[a-z]+$" } } }
      assert.are.same({ "slug must match /^[a-z]+$/ regular expression" }, errors_of(s, { slug = "A" }))
      assert.are.equal("^%l+$", s.fields[1].schema.pattern)
    end)

    it("reports every constraint of a missing property: not_empty, type, then the others", function()
      local s = dto.object {
        name = dto.string { not_empty = true, min_length = 2, max_length = 5, pattern = "^%a+$" },
      }
      assert.are.same({
        "name should not be empty",
        "name must be a string",
        "name must be longer than or equal to 2 characters",
        "name must be shorter than or equal to 5 characters",
        "name must match /^%a+$/ regular expression",
      }, errors_of(s, {}))
    end)

    it("reports several broken constraints of a present value together", function()
      local s = dto.object { name = dto.string { not_empty = true, min_length = 2, pattern = "^%a+$" } }
      assert.are.same({
        "name should not be empty",
        "name must be longer than or equal to 2 characters",
        "name must match /^%a+$/ regular expression",
      }, errors_of(s, { name = "" }))
    end)
  end)

  describe("dto.number and dto.integer", function()
    it("number accepts integers and fractions", function()
      local s = dto.object { amount = dto.number() }
      assert.are.same({ amount = 1.5 }, cleaned_of(s, { amount = 1.5 }))
      assert.are.same({ amount = -3 }, cleaned_of(s, { amount = -3 }))
    end)

    it("number rejects strings, NaN and infinities with the IsNumber message", function()
      local s = dto.object { amount = dto.number() }
      local msg = { "amount must be a number conforming to the specified constraints" }
      assert.are.same(msg, errors_of(s, { amount = "12" }))
      assert.are.same(msg, errors_of(s, { amount = 0 / 0 }))
      assert.are.same(msg, errors_of(s, { amount = math.huge }))
      assert.are.same(msg, errors_of(s, { amount = -math.huge }))
      assert.are.same(msg, errors_of(s, {}))
    end)

    it("min and max use the Min and Max messages", function()
      local s = dto.object { amount = dto.number { min = 0.5, max = 100 } }
      assert.are.same({ "amount must not be less than 0.5" }, errors_of(s, { amount = 0.25 }))
      assert.are.same({ "amount must not be greater than 100" }, errors_of(s, { amount = 100.5 }))
      assert.are.same({ amount = 0.5 }, cleaned_of(s, { amount = 0.5 }))
      assert.are.same({ amount = 100 }, cleaned_of(s, { amount = 100 }))
    end)

    it("a missing number fails the type, min and max", function()
      local s = dto.object { amount = dto.number { min = 1, max = 2 } }
      assert.are.same({
        "amount must be a number conforming to the specified constraints",
        "amount must not be less than 1",
        "amount must not be greater than 2",
      }, errors_of(s, {}))
    end)

    it("integer accepts whole numbers within +-2^53", function()
      local s = dto.object { n = dto.integer() }
      assert.are.same({ n = 42 }, cleaned_of(s, { n = 42 }))
      assert.are.same({ n = -7 }, cleaned_of(s, { n = -7 }))
      assert.are.same({ n = 2 ^ 53 }, cleaned_of(s, { n = 2 ^ 53 }))
    end)

    it("integer rejects fractions, huge values and non-numbers with the IsInt message", function()
      local s = dto.object { n = dto.integer() }
      local msg = { "n must be an integer number" }
      assert.are.same(msg, errors_of(s, { n = 1.5 }))
      assert.are.same(msg, errors_of(s, { n = 1e300 }))
      assert.are.same(msg, errors_of(s, { n = -(2 ^ 53) - 2 }))
      assert.are.same(msg, errors_of(s, { n = 0 / 0 }))
      assert.are.same(msg, errors_of(s, { n = "1" }))
      assert.are.same(msg, errors_of(s, { n = NULL }))
    end)

    it("integer min and max", function()
      local s = dto.object { n = dto.integer { min = 1, max = 10 } }
      assert.are.same({ "n must not be less than 1" }, errors_of(s, { n = 0 }))
      assert.are.same({ "n must not be greater than 10" }, errors_of(s, { n = 11 }))
      assert.are.same({ "n must be an integer number", "n must not be greater than 10" },
        errors_of(s, { n = 10.5 }))
    end)

    it("formats bounds like JavaScript", function()
      local s = dto.object { x = dto.number { min = -2.25, max = 1e21 } }
      assert.are.same({ "x must not be less than -2.25" }, errors_of(s, { x = -3 }))
      assert.are.same({ "x must not be greater than 1e+21" }, errors_of(s, { x = 1e22 }))
      assert.are.same({ "x must not be less than 0.1" },
        errors_of(dto.object { x = dto.number { min = 0.1 } }, { x = 0 }))
    end)
  end)

  describe("dto.boolean", function()
    it("accepts true and false", function()
      local s = dto.object { flag = dto.boolean() }
      assert.are.same({ flag = true }, cleaned_of(s, { flag = true }))
      assert.are.same({ flag = false }, cleaned_of(s, { flag = false }))
    end)

    it("rejects other values with the IsBoolean message", function()
      local s = dto.object { flag = dto.boolean() }
      for _, v in ipairs({ "true", 1, 0, NULL }) do
        assert.are.same({ "flag must be a boolean value" }, errors_of(s, { flag = v }))
      end
      assert.are.same({ "flag must be a boolean value" }, errors_of(s, {}))
    end)
  end)

  describe("dto.email", function()
    local s = dto.object { email = dto.email() }

    it("accepts ordinary addresses", function()
      for _, good in ipairs({
        "ada@example.com", "first.last+tag@sub.example.co.uk", "x@y.io", "o'brien@example.org",
        "user_name-1@my-domain.travel", "üser@exämple.com", "a@xn--bcher-kva.ch",
      }) do
        assert.are.same({ email = good }, cleaned_of(s, { email = good }), good)
      end
    end)

    it("rejects malformed addresses with the IsEmail message", function()
      for _, bad in ipairs({
        "plain", "@example.com", "ada@", "ada@example", "ada@example.c", "ada@@example.com",
        "ada @example.com", "ada@exa mple.com", ".ada@example.com", "ada.@example.com",
        "a..b@example.com", "ada@-example.com", "ada@example-.com", "ada@example..com",
        "ada@example.com.", "ada@example.123", "ada@exam_ple.com", "a(b)@example.com",
        string.rep("a", 65) .. "@example.com", "a@" .. string.rep("b", 64) .. ".com",
        "a@" .. string.rep("bbbbbbbbb.", 25) .. "com",
      }) do
        assert.are.same({ "email must be an email" }, errors_of(s, { email = bad }), bad)
      end
    end)

    it("rejects non-strings with only the IsEmail message", function()
      assert.are.same({ "email must be an email" }, errors_of(s, { email = 42 }))
      assert.are.same({ "email must be an email" }, errors_of(s, {}))
    end)

    it("not_empty adds the IsNotEmpty message first", function()
      local ne = dto.object { email = dto.email { not_empty = true } }
      assert.are.same({ "email should not be empty", "email must be an email" },
        errors_of(ne, { email = "" }))
      assert.are.same({ "email must be an email" }, errors_of(s, { email = "" }))
    end)

    it("rejects invalid UTF-8", function()
      assert.are.same({ "email must be a valid UTF-8 string" }, errors_of(s, { email = "\255@example.com" }))
    end)
  end)

  describe("dto.enum", function()
    it("accepts the listed values (positional form)", function()
      local s = dto.object { role = dto.enum { "admin", "user" } }
      assert.are.same({ role = "user" }, cleaned_of(s, { role = "user" }))
      assert.are.same({ "admin", "user" }, s.fields[1].schema.values)
    end)

    it("rejects other values with the IsIn message", function()
      local s = dto.object { role = dto.enum { values = { "admin", "user" } } }
      local msg = { "role must be one of the following values: admin, user" }
      assert.are.same(msg, errors_of(s, { role = "root" }))
      assert.are.same(msg, errors_of(s, { role = "Admin" }))
      assert.are.same(msg, errors_of(s, {}))
    end)

    it("supports numbers and booleans, compared strictly", function()
      local s = dto.object { level = dto.enum { 1, 2, 3.5, true } }
      assert.are.same({ level = 2 }, cleaned_of(s, { level = 2 }))
      assert.are.same({ level = true }, cleaned_of(s, { level = true }))
      assert.are.same({ "level must be one of the following values: 1, 2, 3.5, true" },
        errors_of(s, { level = "2" }))
    end)
  end)

  describe("dto.any", function()
    it("accepts any present value and shares it", function()
      local s = dto.object { meta = dto.any() }
      local meta = { a = { 1, 2 } }
      assert.are.equal(meta, cleaned_of(s, { meta = meta }).meta)
      assert.are.same({ meta = 0 }, cleaned_of(s, { meta = 0 }))
      assert.are.same({ meta = false }, cleaned_of(s, { meta = false }))
    end)

    it("rejects a missing or null value with the IsDefined message", function()
      local s = dto.object { meta = dto.any() }
      assert.are.same({ "meta should not be null or undefined" }, errors_of(s, {}))
      assert.are.same({ "meta should not be null or undefined" }, errors_of(s, { meta = NULL }))
    end)
  end)

  describe("optional", function()
    local s = dto.object {
      nick = dto.string { optional = true, not_empty = true, max_length = 3 },
      age = dto.integer { optional = true, min = 0 },
    }

    it("skips every check of a missing optional field", function()
      assert.are.same({}, cleaned_of(s, {}))
    end)

    it("skips every check of a null optional field and keeps the null", function()
      local body = cleaned_of(s, cjson.decode('{"nick": null, "age": null}'))
      assert.are.equal(NULL, body.nick)
      assert.are.equal(NULL, body.age)
    end)

    it("still checks a present optional field", function()
      assert.are.same({
        "age must not be less than 0",
        "nick should not be empty",
      }, errors_of(s, { nick = "", age = -1 }))
      assert.are.same({ "nick must be shorter than or equal to 3 characters" },
        errors_of(s, { nick = "abcd" }))
    end)

    it("an optional top-level schema accepts nil and null", function()
      local top = dto.object({ a = dto.string() }, { optional = true })
      local cleaned, messages = top:validate(nil)
      assert.is_nil(cleaned)
      assert.is_nil(messages)
      cleaned, messages = top:validate(NULL)
      assert.are.equal(NULL, cleaned)
      assert.is_nil(messages)
    end)
  end)

  describe("dto.array", function()
    it("accepts an array and returns a new one", function()
      local s = dto.object { tags = dto.array(dto.string()) }
      local input = { tags = { "a", "b" } }
      local body = cleaned_of(s, input)
      assert.are.same({ tags = { "a", "b" } }, body)
      assert.are_not.equal(input.tags, body.tags)
    end)

    it("accepts an empty table (cjson's [] and {}) as an empty array", function()
      local s = dto.object { tags = dto.array(dto.string()) }
      assert.are.same({ tags = {} }, cleaned_of(s, cjson.decode('{"tags": []}')))
      assert.are.same({ tags = {} }, cleaned_of(s, cjson.decode('{"tags": {}}')))
    end)

    it("rejects a non-array with the IsArray message and the size messages", function()
      local s = dto.object { tags = dto.array(dto.string(), { min_size = 1, max_size = 3 }) }
      local msgs = {
        "tags must be an array",
        "tags must contain at least 1 elements",
        "tags must contain no more than 3 elements",
      }
      assert.are.same(msgs, errors_of(s, { tags = "a" }))
      assert.are.same(msgs, errors_of(s, { tags = { a = 1 } }))
      assert.are.same(msgs, errors_of(s, { tags = { [1] = "a", [3] = "c" } }))
      assert.are.same(msgs, errors_of(s, {}))
    end)

    it("min_size and max_size use the ArrayMinSize and ArrayMaxSize messages", function()
      local s = dto.object { tags = dto.array(dto.string(), { min_size = 2, max_size = 3 }) }
      assert.are.same({ "tags must contain at least 2 elements" }, errors_of(s, { tags = { "a" } }))
      assert.are.same({ "tags must contain no more than 3 elements" },
        errors_of(s, { tags = { "a", "b", "c", "d" } }))
      assert.are.same({ tags = { "a", "b" } }, cleaned_of(s, { tags = { "a", "b" } }))
    end)

    it("reports each broken item constraint once for an array of scalars", function()
      local s = dto.object { tags = dto.array(dto.string { max_length = 3 }) }
      assert.are.same({
        "each value in tags must be a string",
        "each value in tags must be shorter than or equal to 3 characters",
      }, errors_of(s, { tags = { "toolong", "ok", "alsotoolong", 7 } }))
    end)

    it("an array of numbers reports the item messages", function()
      local s = dto.object { scores = dto.array(dto.integer { min = 0 }) }
      assert.are.same({
        "each value in scores must be an integer number",
        "each value in scores must not be less than 0",
      }, errors_of(s, { scores = { 1, -2, 2.5 } }))
    end)

    it("reports paths with the index for an array of objects", function()
      local s = dto.object {
        items = dto.array(dto.object { name = dto.string { not_empty = true }, qty = dto.integer() }),
      }
      assert.are.same({
        "items.0.name should not be empty",
        "items.2.name should not be empty",
        "items.2.name must be a string",
        "items.2.qty must be an integer number",
      }, errors_of(s, { items = { { name = "", qty = 1 }, { name = "b", qty = 2 }, {} } }))
    end)

    it("reports an element of an array of objects that is not an object once", function()
      local s = dto.object { items = dto.array(dto.object { name = dto.string() }) }
      assert.are.same({
        "items.1.name must be a string",
        "each value in nested property items must be either object or array",
      }, errors_of(s, { items = { 5, { name = 1 }, "x" } }))
    end)

    it("cleans the objects inside an array", function()
      local s = dto.object { items = dto.array(dto.object { id = dto.integer() }) }
      local body = cleaned_of(s, { items = { { id = 1, junk = true }, { id = 2 } } })
      assert.are.same({ items = { { id = 1 }, { id = 2 } } }, body)
    end)

    it("allows null items when the item schema is optional", function()
      local s = dto.object { tags = dto.array(dto.string { optional = true }) }
      local body = cleaned_of(s, cjson.decode('{"tags": ["a", null, "b"]}'))
      assert.are.equal(3, #body.tags)
      assert.are.equal(NULL, body.tags[2])
      local strict = dto.object { tags = dto.array(dto.string()) }
      assert.are.same({ "each value in tags must be a string" },
        errors_of(strict, cjson.decode('{"tags": ["a", null]}')))
    end)

    it("arrays of arrays report the index of the inner array", function()
      local s = dto.object { grid = dto.array(dto.array(dto.integer())) }
      assert.are.same({ grid = { { 1, 2 }, {} } }, cleaned_of(s, { grid = { { 1, 2 }, {} } }))
      assert.are.same({
        "grid.0 must be an array",
        "grid.each value in 1 must be an integer number",
      }, errors_of(s, { grid = { "x", { 1, 1.5 } } }))
    end)

    it("validates a top-level array", function()
      local s = dto.array(dto.object { id = dto.integer() }, { max_size = 2 })
      assert.are.same({ { id = 1 } }, cleaned_of(s, { { id = 1 } }))
      assert.are.same({ "0.id must be an integer number" }, errors_of(s, { { id = "1" } }))
      assert.are.same({ "body must be an array", "body must contain no more than 2 elements" },
        errors_of(s, "nope"))
      assert.are.same({ "each value in body must be a string" },
        errors_of(dto.array(dto.string()), { 1 }))
    end)
  end)

  describe("dto.object", function()
    it("reports nested paths", function()
      local s = dto.object {
        address = dto.object { city = dto.string(), zip = dto.string { length = { 5, 5 } } },
      }
      assert.are.same({
        "address.city must be a string",
        "address.zip must be shorter than or equal to 5 characters",
      }, errors_of(s, { address = { city = 5, zip = "123456" } }))
    end)

    it("reports deep paths", function()
      local s = dto.object {
        a = dto.object { b = dto.object { c = dto.array(dto.object { d = dto.boolean() }) } },
      }
      assert.are.same({ "a.b.c.0.d must be a boolean value" },
        errors_of(s, { a = { b = { c = { { d = "yes" } } } } }))
    end)

    it("a nested object that is missing, null or not an object gets the nested message", function()
      local s = dto.object { address = dto.object { city = dto.string() } }
      local msg = { "nested property address must be either object or array" }
      assert.are.same(msg, errors_of(s, {}))
      assert.are.same(msg, errors_of(s, { address = NULL }))
      assert.are.same(msg, errors_of(s, { address = "Paris" }))
      assert.are.same(msg, errors_of(s, { address = { "Paris" } }))
    end)

    it("a top-level value that is not an object fails with one message", function()
      local s = dto.object { name = dto.string() }
      local msg = { "body must be an object" }
      assert.are.same(msg, errors_of(s, "text"))
      assert.are.same(msg, errors_of(s, 42))
      assert.are.same(msg, errors_of(s, nil))
      assert.are.same(msg, errors_of(s, NULL))
      assert.are.same(msg, errors_of(s, cjson.decode("[1, 2]")))
      assert.are.same(msg, errors_of(s, { [1] = "x", name = "y" }))
      assert.are.same({ "payload must be an object" }, errors_of(s, "text", { name = "payload" }))
    end)

    it("an empty table is an empty object", function()
      assert.are.same({}, cleaned_of(dto.object {}, cjson.decode("[]")))
      assert.are.same({}, cleaned_of(dto.object {}, {}))
    end)

    it("unknown = \"strip\" (the default) drops unknown keys", function()
      local s = dto.object({ a = dto.string() }, { unknown = "strip" })
      assert.are.same({ a = "x" }, cleaned_of(s, { a = "x", b = "y" }))
      assert.are.equal("strip", dto.object({}).unknown)
    end)

    it("unknown = \"reject\" lists the unknown keys first, sorted, with the whitelist message", function()
      local s = dto.object({ a = dto.string() }, { unknown = "reject" })
      assert.are.same({
        "property b should not exist",
        "property c should not exist",
        "a must be a string",
      }, errors_of(s, { c = 1, b = 2 }))
      assert.are.same({ a = "x" }, cleaned_of(s, { a = "x" }))
    end)

    it("unknown = \"reject\" on a nested object prefixes the parent path", function()
      local s = dto.object { address = dto.object({ city = dto.string() }, { unknown = "reject" }) }
      assert.are.same({ "address.property zip should not exist" },
        errors_of(s, { address = { city = "Paris", zip = "75001" } }))
    end)

    it("unknown = \"allow\" keeps unknown keys unchecked", function()
      local s = dto.object({ a = dto.string() }, { unknown = "allow" })
      local extra = { deep = true }
      local body = cleaned_of(s, { a = "x", b = 2, c = extra })
      assert.are.same({ a = "x", b = 2, c = { deep = true } }, body)
      assert.are.equal(extra, body.c)
    end)

    it("the ordered form keeps the declaration order", function()
      local s = dto.object {
        { "name", dto.string { not_empty = true } },
        { "email", dto.email() },
        { "age", dto.integer() },
      }
      assert.are.same({
        "name should not be empty",
        "name must be a string",
        "email must be an email",
        "age must be an integer number",
      }, errors_of(s, {}))
      assert.are.same({ "name", "email", "age" },
        { s.fields[1].name, s.fields[2].name, s.fields[3].name })
    end)

    it("the hash form orders fields alphabetically in schema.fields", function()
      local s = dto.object { zeta = dto.string(), alpha = dto.integer(), mid = dto.boolean() }
      assert.are.same({ "alpha", "mid", "zeta" },
        { s.fields[1].name, s.fields[2].name, s.fields[3].name })
      assert.are.equal("integer", s.fields[1].schema.kind)
    end)

    it("a schema can be reused in several places", function()
      local Name = dto.string { not_empty = true }
      local s = dto.object { first = Name, last = Name, kids = dto.array(dto.object { first = Name }) }
      assert.are.same({ "first should not be empty", "kids.0.first should not be empty" },
        errors_of(s, { first = "", last = "L", kids = { { first = "" } } }))
    end)
  end)

  describe("validate", function()
    it("never mutates its input", function()
      local s = dto.object({
        name = dto.string(),
        n = dto.integer(),
        items = dto.array(dto.object { id = dto.integer() }),
      }, { unknown = "strip" })
      local input = { name = "x", n = "5", junk = { 1 }, items = { { id = "2", more = 1 } } }
      local before = deep_copy(input)
      local out = cleaned_of(s, input, { coerce = true })
      assert.are.same({ name = "x", n = 5, items = { { id = 2 } } }, out)
      assert.are.same(before, input)
      local bad = { name = 1, junk = true, items = { 5, { id = "x", more = 1 } } }
      before = deep_copy(bad)
      errors_of(s, bad)
      assert.are.same(before, bad)
    end)

    it("returns a new table for objects", function()
      local s = dto.object { a = dto.string() }
      local input = { a = "x" }
      local out = cleaned_of(s, input)
      assert.are_not.equal(input, out)
      assert.are.same(input, out)
    end)

    it("validates a top-level scalar, named by opts.name", function()
      assert.are.same({ "body must be a string" }, errors_of(dto.string(), 1))
      assert.are.same({ "id must be an integer number" }, errors_of(dto.integer(), "x", { name = "id" }))
      assert.are.equal(7, cleaned_of(dto.integer(), 7))
    end)

    it("must be called with a colon", function()
      local s = dto.string()
      assert.matches("schema:validate", raised(s.validate, "x"))
    end)
  end)

  describe("coerce", function()
    local Params = dto.object {
      id = dto.integer { min = 1 },
      price = dto.number(),
      active = dto.boolean(),
      page = dto.integer { optional = true },
    }

    it("converts strings to numbers, integers and booleans", function()
      local p = cleaned_of(Params, { id = "42", price = "-1.5e2", active = "true" }, { coerce = true })
      assert.are.same({ id = 42, price = -150, active = true }, p)
      assert.are.equal("number", type(p.id))
      p = cleaned_of(Params, { id = "+7", price = ".5", active = "false" }, { coerce = true })
      assert.are.same({ id = 7, price = 0.5, active = false }, p)
    end)

    it("fails a non-numeric string with the class-validator message", function()
      assert.are.same({
        "active must be a boolean value",
        "id must be an integer number",
        "id must not be less than 1",
        "price must be a number conforming to the specified constraints",
      }, errors_of(Params, { id = "abc", price = "1,5", active = "yes" }, { coerce = true }))
    end)

    it("rejects loose number syntaxes", function()
      local s = dto.object { n = dto.number() }
      for _, bad in ipairs({ "", " 1", "1 ", "0x10", "inf", "nan", "1e", "--1", "1.2.3" }) do
        assert.are.same({ "n must be a number conforming to the specified constraints" },
          errors_of(s, { n = bad }, { coerce = true }), bad)
      end
    end)

    it("a fractional string fails an integer", function()
      assert.are.same({ "id must be an integer number" },
        errors_of(Params, { id = "1.5", price = "1", active = "true" }, { coerce = true }))
    end)

    it("does nothing without opts.coerce", function()
      assert.are.same({
        "active must be a boolean value",
        "id must be an integer number",
        "id must not be less than 1",
        "price must be a number conforming to the specified constraints",
      }, errors_of(Params, { id = "42", price = "1", active = "true" }))
    end)

    it("leaves strings alone for string schemas and converts enum values", function()
      local s = dto.object { code = dto.string(), level = dto.enum { 1, 2 }, mode = dto.enum { "a", "b" } }
      assert.are.same({ code = "007", level = 2, mode = "a" },
        cleaned_of(s, { code = "007", level = "2", mode = "a" }, { coerce = true }))
    end)

    it("applies to arrays of query values", function()
      local s = dto.object { ids = dto.array(dto.integer()) }
      assert.are.same({ ids = { 1, 2 } }, cleaned_of(s, { ids = { "1", "2" } }, { coerce = true }))
    end)
  end)

  describe("declaration errors", function()
    local function decl_error(fn, ...)
      local msg = raised(fn, ...)
      -- error(msg, 2): the position is the caller's line, in this file
      assert.matches("dto_spec%.lua:%d+:", msg)
      return msg
    end

    it("unknown option names", function()
      local msg = decl_error(function() return dto.string { max_len = 3 } end)
      assert.matches('dto.string: unknown option "max_len"', msg, 1, true)
      decl_error(function() return dto.number { minimum = 1 } end)
      decl_error(function() return dto.boolean { not_empty = true } end)
      decl_error(function() return dto.array(dto.string(), { min = 1 }) end)
      decl_error(function() return dto.object({}, { strict = true }) end)
      decl_error(function() return dto.any { min = 1 } end)
    end)

    it("wrong option types", function()
      assert.matches("option 'min_length' must be a non-negative integer",
        decl_error(function() return dto.string { min_length = "3" } end), 1, true)
      decl_error(function() return dto.string { min_length = -1 } end)
      decl_error(function() return dto.string { max_length = 2.5 } end)
      decl_error(function() return dto.string { not_empty = "yes" } end)
      decl_error(function() return dto.string { optional = 1 } end)
      decl_error(function() return dto.number { min = "0" } end)
      decl_error(function() return dto.number { max = 0 / 0 } end)
      decl_error(function() return dto.integer { max = math.huge } end)
      decl_error(function() return dto.string { length = 5 } end)
      decl_error(function() return dto.string { length = { 1 } } end)
      decl_error(function() return dto.object({}, { unknown = "forbid" }) end)
      decl_error(function() return dto.string "x" end)
    end)

    it("min greater than max", function()
      assert.matches("min_length (5) is greater than max_length (2)",
        decl_error(function() return dto.string { min_length = 5, max_length = 2 } end), 1, true)
      decl_error(function() return dto.string { length = { 4, 2 } } end)
      decl_error(function() return dto.number { min = 2, max = 1 } end)
      decl_error(function() return dto.integer { min = 2, max = 1 } end)
      decl_error(function() return dto.array(dto.string(), { min_size = 3, max_size = 1 }) end)
    end)

    it("invalid patterns", function()
      for _, bad in ipairs({ "a[b", "%", "(a", "a)", "%b(", "%f", "%fa", "(a)%2", "%1(a)", "[%" }) do
        local msg = decl_error(function() return dto.string { pattern = bad } end)
        assert.matches("invalid pattern", msg, 1, true)
      end
      decl_error(function() return dto.string { pattern = { name = "x" } } end)
      decl_error(function() return dto.string { pattern = { lua = "x", name = 1 } } end)
      decl_error(function() return dto.string { pattern = 5 } end)
    end)

    it("valid patterns are accepted", function()
      for _, good in ipairs({ "^%d+$", "[]]", "[^%]]", "%b()", "%f[%w]%w+", "(a)%1", "()a", "a$b", "^$" }) do
        assert.is_true(dto.is_schema(dto.string { pattern = good }), good)
      end
    end)

    it("non-schema field values", function()
      assert.matches("field 'name' is not a schema",
        decl_error(function() return dto.object { name = "string" } end), 1, true)
      assert.matches("did you forget to call the constructor",
        decl_error(function() return dto.object { name = dto.string } end), 1, true)
      assert.matches("options go in the second argument",
        decl_error(function() return dto.object { name = dto.string(), optional = true } end), 1, true)
      decl_error(function() return dto.object { { "name", "nope" } } end)
      decl_error(function() return dto.object { dto.string() } end)
      decl_error(function() return dto.object { { "a", dto.string() }, b = dto.string() } end)
      decl_error(function() return dto.object { { "a", dto.string() }, { "a", dto.string() } } end)
      decl_error(function() return dto.object { { 1, dto.string() } } end)
      decl_error(function() return dto.object() end)
      decl_error(function() return dto.object(dto.string()) end)
    end)

    it("array misuse", function()
      decl_error(function() return dto.array() end)
      assert.matches("first argument must be the schema of the items",
        decl_error(function() return dto.array { dto.string() } end), 1, true)
      decl_error(function() return dto.array(dto.string(), { min_size = -1 }) end)
    end)

    it("enum misuse", function()
      decl_error(function() return dto.enum {} end)
      decl_error(function() return dto.enum() end)
      decl_error(function() return dto.enum { values = {} } end)
      decl_error(function() return dto.enum { "a", values = { "b" } } end)
      decl_error(function() return dto.enum { values = { "a", { "b" } } } end)
      decl_error(function() return dto.enum { values = { a = "a" } } end)
      decl_error(function() return dto.enum { values = "a" } end)
      decl_error(function() return dto.enum { 0 / 0 } end)
    end)

    it("the error points at the line of the call", function()
      local line
      local ok, err = pcall(function()
        line = debug.getinfo(1, "l").currentline + 1
        local Dto = dto.object { n = dto.integer { min = 3, max = 1 } }
        return Dto
      end)
      assert.is_false(ok)
      assert.matches("dto_spec%.lua:" .. line .. ": dto%.integer: min %(3%) is greater than max %(1%)", err)
    end)

    it("after a tail call, the error points at the nearest caller with a line", function()
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() return dto.integer { min = 3, max = 1 } end)
      assert.is_false(ok)
      assert.matches("dto_spec%.lua:" .. line .. ": dto%.integer:", err)
    end)

    it("nesting deeper than 32 levels", function()
      local s = dto.string()
      for _ = 1, 31 do
        s = dto.array(s)
      end
      assert.is_true(dto.is_schema(s))
      assert.matches("deeper than 32", decl_error(function() return dto.array(s) end), 1, true)
      assert.matches("deeper than 32", decl_error(function() return dto.object { x = s } end), 1, true)
    end)

    it("describe and validate reject non-schemas", function()
      decl_error(function() return dto.describe({}) end)
      assert.has_error(function() dto.string():validate("x", "coerce") end)
    end)
  end)

  describe("dto.describe", function()
    it("describes scalars with their constraints", function()
      assert.are.equal("string", dto.describe(dto.string()))
      assert.are.equal("string(not_empty, min_length=1, max_length=5, length=1..5, pattern=/^%a+$/, optional)",
        dto.describe(dto.string {
          not_empty = true, min_length = 1, max_length = 5, length = { 1, 5 }, pattern = "^%a+$",
          optional = true,
        }))
      assert.are.equal("number(min=0.5, max=10)", dto.describe(dto.number { min = 0.5, max = 10 }))
      assert.are.equal("integer", dto.describe(dto.integer()))
      assert.are.equal("boolean(optional)", dto.describe(dto.boolean { optional = true }))
      assert.are.equal("email(not_empty)", dto.describe(dto.email { not_empty = true }))
      assert.are.equal("enum(a|b)", dto.describe(dto.enum { "a", "b" }))
      assert.are.equal("any", dto.describe(dto.any()))
    end)

    it("describes objects and arrays", function()
      local s = dto.object({
        email = dto.email(),
        name = dto.string { not_empty = true },
        tags = dto.array(dto.string(), { min_size = 1 }),
      }, { unknown = "reject" })
      assert.are.equal(
        "object(unknown=reject){email: email, name: string(not_empty), tags: array<string>(min_size=1)}",
        dto.describe(s))
      assert.are.equal(dto.describe(s), s:describe())
      assert.are.equal("dto." .. dto.describe(s), tostring(s))
    end)
  end)

  describe("helpers", function()
    it("validates e-mail addresses up to 254 characters", function()
      local long = string.rep("a", 64) .. "@" .. string.rep("b", 63) .. "." .. string.rep("c", 63)
        .. "." .. string.rep("d", 57) .. ".com"
      assert.are.equal(254, #long)
      assert.is_true(dto._is_email(long))
      assert.is_false(dto._is_email(long .. "d"))
      assert.is_false(dto._is_email("a@" .. string.rep("b", 64) .. ".com")) -- label over 63
    end)

    it("counts UTF-8 code points and spots bad sequences", function()
      assert.are.equal(0, dto._utf8_len(""))
      assert.are.equal(5, dto._utf8_len("héllo"))
      assert.is_nil(dto._utf8_len("\192\175")) -- overlong "/"
      assert.is_nil(dto._utf8_len("\237\191\191")) -- surrogate
    end)
  end)
end)
