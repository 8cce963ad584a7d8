-- The lossless JSON codec of kinformer.core: what is read from the API server,
-- changed in Lua and written back must mean the same to it. Needs no cluster.
local core = require "kinformer.core"
local cjson = require "cjson"

local decode, encode = core.json_decode, core.json_encode

local function roundtrip(s)
  local v = assert(decode(s))
  local out = assert(encode(v))
  return out, v
end

-- A Deployment as the API server returns it, its keys sorted at every level so
-- that the re-encoded text can be compared byte for byte.
local deployment = table.concat {
  '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":',
  '{"deployment.kubernetes.io/revision":"3","note":"café 🚀 \\"quoted\\"\\n"},',
  '"creationTimestamp":"2024-05-01T10:00:00Z","finalizers":[],"generation":9007199254740993,',
  '"labels":{"app":"web","app.kubernetes.io/name":"web"},"name":"web","namespace":"default",',
  '"ownerReferences":[],"resourceVersion":"123456","uid":"0f1e2d3c-aaaa-bbbb-cccc-000000000001"},',
  '"spec":{"minReadySeconds":0,"paused":false,"progressDeadlineSeconds":600,"replicas":3,',
  '"revisionHistoryLimit":10,"selector":{"matchLabels":{"app":"web"}},"strategy":{},',
  '"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":',
  '[{"args":[],"env":[{"name":"RATIO","value":"0.75"},{"name":"EMPTY","value":""}],',
  '"image":"nginx:1.27","imagePullPolicy":"IfNotPresent","name":"web","ports":[{"containerPort":8080,',
  '"protocol":"TCP"}],"resources":{"limits":{"cpu":"500m","memory":"128Mi"},"requests":{}},',
  '"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],',
  '"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler",',
  '"securityContext":{},"terminationGracePeriodSeconds":30,"tolerations":[]}}},',
  '"status":{"availableReplicas":3,"conditions":[{"lastTransitionTime":"2024-05-01T10:00:05Z",',
  '"message":"Deployment has minimum availability.","reason":"MinimumReplicasAvailable",',
  '"status":"True","type":"Available"}],"observedGeneration":9007199254740993,"readyReplicas":3,',
  '"replicas":3,"updatedReplicas":3,"weight":-2.5e-07}}',
}

describe("core.json_decode and core.json_encode", function()
  describe("round trips", function()
    it("keeps an empty array an array", function()
      local out, v = roundtrip('{"a":[]}')
      assert.are.equal('{"a":[]}', out)
      assert.are.equal(core.array_mt, getmetatable(v.a))
      assert.are.equal(0, #v.a)
    end)

    it("keeps an empty object an object", function()
      local out, v = roundtrip('{"data":{}}')
      assert.are.equal('{"data":{}}', out)
      assert.is_nil(getmetatable(v.data))
      assert.is_nil(next(v.data))
    end)

    it("keeps null as cjson.null", function()
      local out, v = roundtrip('{"x":null}')
      assert.are.equal(cjson.null, v.x)
      assert.are.equal(core.null, v.x)
      assert.are.equal('{"x":null}', out)
      assert.are.equal('[null,1,null]', roundtrip('[null,1,null]'))
      assert.are.equal(cjson.null, decode("null"))
      assert.are.equal('null', encode(cjson.null))
      assert.are.equal('null', encode(nil))
    end)

    for _, s in ipairs { "9007199254740993", "-9223372036854775808", "9223372036854775807", "0", "-1",
                         "1000000000000000" } do
      it("keeps the integer " .. s .. " exact", function()
        local v = assert(decode(s))
        assert.are.equal("integer", math.type(v))
        assert.are.equal(s, tostring(v))
        assert.are.equal(s, encode(v))
        assert.are.equal('{"n":' .. s .. '}', roundtrip('{"n":' .. s .. '}'))
      end)
    end

    it("reads integers beyond int64 as floats", function()
      local v = assert(decode("9223372036854775808"))
      assert.are.equal("float", math.type(v))
      assert.are.equal(2.0 ^ 63, v)
      assert.are.equal("float", math.type(decode("-9223372036854775809")))
    end)

    for _, s in ipairs { "0.1", "1e300", "-2.5e-7", "1.7976931348623157e308", "5e-324", "123.456", "0.30000000000000004" } do
      it("round-trips the float " .. s .. " exactly", function()
        local v = assert(decode(s))
        assert.are.equal("float", math.type(v))
        assert.are.equal(tonumber(s), v)
        local again = assert(decode(assert(encode(v))))
        assert.are.equal("float", math.type(again))
        assert.are.equal(v, again)
      end)
    end

    it("writes floats in their shortest exact form", function()
      assert.are.equal("0.1", encode(0.1))
      assert.are.equal("1e+300", encode(1e300))
      assert.are.equal("-2.5e-07", encode(-2.5e-7))
      assert.are.equal("0.30000000000000004", encode(0.1 + 0.2))
    end)

    it("reads 3.0 as a float and writes it as 3", function()
      local v = assert(decode("3.0"))
      assert.are.equal("float", math.type(v))
      assert.are.equal(3, v)
      assert.are.equal("3", encode(v))
      assert.are.equal("3", encode(3.0))
      assert.are.equal("-42", encode(-42.0))
      assert.are.equal("9007199254740992", encode(2.0 ^ 53))
      assert.are.equal("float", math.type(decode("1E2")))
    end)

    it("writes integral floats beyond 2^53 in their shortest exact form", function()
      for _, x in ipairs { 2.0 ^ 60, -(2.0 ^ 70), 1e21, 1e16 } do
        local again = assert(decode(assert(encode(x))))
        assert.are.equal("float", math.type(again))
        assert.are.equal(x, again)
      end
      -- Shortest here is all the digits: it reads back as the same value, exactly.
      assert.are.equal("9007199254740994", encode(2.0 ^ 53 + 2))
      assert.are.equal(9007199254740994, decode(encode(2.0 ^ 53 + 2)))
    end)

    it("keeps the sign of -0.0", function()
      local s = assert(encode(-0.0))
      assert.are.equal("-0.0", s)
      local v = decode(s)
      assert.are.equal("float", math.type(v))
      assert.are.equal("-inf", tostring(1 / v))
      assert.are.equal("integer", math.type(decode("-0")))
    end)

    it("decodes unicode escapes and surrogate pairs to UTF-8", function()
      assert.are.equal("é", decode('"\\u00e9"'))
      assert.are.equal("€", decode('"\\u20AC"'))
      assert.are.equal("😀", decode('"\\ud83d\\ude00"'))
      assert.are.equal("a\0b", decode('"a\\u0000b"'))
      assert.are.equal('"/\\\b\f\n\r\t', decode('"\\"\\/\\\\\\b\\f\\n\\r\\t"'))
      -- A lone surrogate has no UTF-8 form.
      assert.are.equal("\xEF\xBF\xBDx", decode('"\\ud800x"'))
      assert.are.equal("\xEF\xBF\xBD", decode('"\\udc00"'))
      assert.are.equal("\xEF\xBF\xBD\xEF\xBF\xBD", decode('"\\ud800\\ud800"'))
      assert.are.equal("\xEF\xBF\xBDA", decode('"\\ud800\\u0041"'))
    end)

    it("writes UTF-8 through and escapes what JSON needs", function()
      local s = 'é 😀 "q" \\ \n\t\r\b\f \1 \31 \0 \127'
      local out = assert(encode(s))
      assert.are.equal('"é 😀 \\"q\\" \\\\ \\n\\t\\r\\b\\f \\u0001 \\u001f \\u0000 \127"', out)
      assert.are.equal(s, decode(out))
      assert.are.equal(s, cjson.decode(out))
    end)

    it("re-encodes a Deployment byte for byte", function()
      local out, d = roundtrip(deployment)
      assert.are.equal(deployment, out)
      assert.are.equal(core.array_mt, getmetatable(d.metadata.finalizers))
      assert.are.same({}, d.spec.strategy)
      assert.is_nil(getmetatable(d.spec.strategy))
      assert.are.equal(cjson.null, d.spec.template.metadata.creationTimestamp)
      assert.are.equal(9007199254740993, d.metadata.generation)
      assert.are.equal("integer", math.type(d.spec.replicas))
      assert.are.equal("web", d.spec.template.spec.containers[1].name)
      -- Changed in Lua, written back: the change, and only it, shows.
      d.spec.replicas = 5
      d.metadata.finalizers[1] = "example.com/cleanup"
      local changed = assert(encode(d))
      local want = deployment:gsub('"replicas":3,"revisionHistoryLimit"', '"replicas":5,"revisionHistoryLimit"')
        :gsub('"finalizers":%[%]', '"finalizers":["example.com/cleanup"]')
      assert.are.equal(want, changed)
      -- cjson reads what we write, though it cannot keep what we keep.
      assert.are.equal("web", cjson.decode(changed).metadata.name)
      assert.are_not.equal(9007199254740993, cjson.decode(changed).metadata.generation)
    end)

    it("round-trips long strings with escapes", function()
      local s = ("x"):rep(3000) .. "\n" .. ("é"):rep(5000) .. '"' .. ("y"):rep(10000)
      local out = assert(encode { s, s })
      assert.are.same({ s, s }, decode(out))
      assert.are.equal(out, encode(decode(out)))
    end)

    it("accepts whitespace around and between values", function()
      assert.are.equal('{"a":[1,true,false,null]}', roundtrip(' \t\r\n{ "a" : [ 1 , true , false , null ] } \n'))
    end)

    it("lets the last of repeated member names win", function()
      assert.are.equal('{"a":2}', roundtrip('{"a":1,"a":2}'))
    end)

    -- members wait on the Lua stack and move into their table 1024 at a time
    it("reads objects and arrays of thousands of members, in order, last name winning", function()
      local parts, keys = {}, {}
      for i = 1, 5000 do parts[i] = tostring(i) end
      local arr = decode("[" .. table.concat(parts, ",") .. "]")
      assert.are.equal(5000, #arr)
      for i = 1, 5000 do assert.are.equal(i, arr[i]) end
      for i = 1, 3000 do keys[i] = ('"k%d":%d'):format(i, i) end
      keys[#keys + 1] = '"k1":"last"'    -- repeated after two flushes
      keys[#keys + 1] = '"k1500":"late"' -- first seen in the second batch
      local obj = decode("{" .. table.concat(keys, ",") .. "}")
      local n = 0
      for _ in pairs(obj) do n = n + 1 end
      assert.are.equal(3000, n)
      assert.are.equal("last", obj.k1)
      assert.are.equal("late", obj.k1500)
      assert.are.equal(3000, obj.k3000)
      assert.are.equal(1025, obj.k1025)
    end)

    -- member names come from a cache of names already seen: one that looks
    -- alike to its hash (same length, same first and last 8 bytes) must
    -- still be told apart, at every length a short string can have
    it("tells apart member names that share their ends, decoded again and again", function()
      for round = 1, 3 do
        for len = 0, 42 do
          local a = ("a"):rep(len)
          local names = { a }
          if len >= 1 then names[2] = "b" .. a:sub(2) end
          if len >= 17 then
            for _, mid in ipairs { "X", "Y", "é" } do
              local n = a:sub(1, 8) .. mid .. a:sub(8 + #mid + 1)
              names[#names + 1] = n
            end
          end
          local parts = {}
          for i, n in ipairs(names) do parts[i] = encode(n) .. ":" .. (i * 10 + round) end
          local obj = decode("{" .. table.concat(parts, ",") .. "}")
          local count = 0
          for k, v in pairs(obj) do
            count = count + 1
            local i
            for j, n in ipairs(names) do if n == k then i = j end end
            assert.is_not_nil(i, ("name %q (length %d) was never written"):format(k, len))
            assert.are.equal(i * 10 + round, v)
          end
          assert.are.equal(#names, count)
        end
      end
      -- and names spread over many objects, more than the cache holds
      local objs = {}
      for i = 1, 2000 do objs[i] = ('{"name-%d":%d,"metadata":{"n%d":"v"}}'):format(i, i, i % 700) end
      local arr = decode("[" .. table.concat(objs, ",") .. "]")
      for i = 1, 2000 do
        assert.are.equal(i, arr[i]["name-" .. i])
        assert.are.equal("v", arr[i].metadata["n" .. (i % 700)])
      end
    end)

    it("accepts nesting up to 10100 levels (the API server stores objects 10,000 deep)", function()
      local s = ("["):rep(10100) .. ("]"):rep(10100)
      assert.are.equal(s, roundtrip(s))
    end)
  end)

  describe("decode errors", function()
    local bad = {
      { "", "unexpected end of input at byte 0" },
      { "   ", "unexpected end of input at byte 3" },
      { "[1,]", "unexpected character at byte 3" },
      { '{"a":1,}', "expected a member name at byte 7" },
      { '{"a" 1}', "expected ':' at byte 5" },
      { "{a:1}", "expected a member name at byte 1" },
      { "[1 2]", "expected ',' or ']' at byte 3" },
      { '{"a":1 "b":2}', "expected ',' or '}' at byte 7" },
      { "01", "trailing characters after the value at byte 1" },
      { "[1] x", "trailing characters after the value at byte 4" },
      { "1.", "bad number fraction at byte 2" },
      { "1e", "bad number exponent at byte 2" },
      { "-", "bad number at byte 1" },
      { "+1", "unexpected character at byte 0" },
      { ".5", "unexpected character at byte 0" },
      { "NaN", "unexpected character at byte 0" },
      { "Infinity", "unexpected character at byte 0" },
      { "1e400", "number out of range at byte 0" },
      { "nul", "unexpected character at byte 0" },
      { "tru", "unexpected character at byte 0" },
      { "True", "unexpected character at byte 0" },
      { '"abc', "unterminated string at byte 4" },
      { '"a\nb"', "control character in string at byte 2" },
      { '"\\x"', "bad escape in string at byte 2" },
      { '"\\u12"', "short \\u escape at byte 2" },
      { '"\\u12G4"', "bad \\u escape at byte 2" },
      { "'a'", "unexpected character at byte 0" },
      { "[1]\0", "trailing characters after the value at byte 3" },
    }
    for _, case in ipairs(bad) do
      it(("rejects %q"):format(case[1]), function()
        local v, err = decode(case[1])
        assert.is_nil(v)
        assert.are.equal(case[2], err)
      end)
    end

    it("fails cleanly on 100000 nested arrays", function()
      local v, err = decode(("["):rep(100000))
      assert.is_nil(v)
      assert.are.equal("nesting too deep at byte 10100", err)
      v, err = decode(('{"a":'):rep(100000))
      assert.is_nil(v)
      assert.matches("^nesting too deep at byte %d+$", err)
      v, err = decode(("["):rep(10101) .. ("]"):rep(10101))
      assert.is_nil(v)
      assert.matches("nesting too deep", err)
    end)

    it("raises on misuse", function()
      assert.has_error(function() decode() end)
      assert.has_error(function() decode(5) end)
      assert.has_error(function() decode({}) end)
    end)
  end)

  describe("encoding Lua values", function()
    it("writes arrays, objects and empty tables", function()
      assert.are.equal("[]", encode(core.array {}))
      assert.are.equal("[]", encode(core.array()))
      assert.are.equal("{}", encode {})
      assert.are.equal("[1,2,3]", encode { 1, 2, 3 })
      assert.are.equal('[1,"two",[3],{"four":4}]', encode { 1, "two", { 3 }, { four = 4 } })
      assert.are.equal("[true,false]", encode { true, false })
      assert.are.equal('{"a":1,"b":[],"c":{}}', encode { c = {}, b = core.array(), a = 1 })
    end)

    it("sorts object keys by bytes", function()
      assert.are.equal('{"A":1,"B":2,"a":3,"aa":4,"b":5,"z":6}', encode { z = 6, b = 5, aa = 4, a = 3, B = 2, A = 1 })
      local t, keys = {}, {}
      for i = 1, 500 do
        t["k" .. i] = i
        keys[#keys + 1] = "k" .. i
      end
      table.sort(keys)
      local want = {}
      for _, k in ipairs(keys) do want[#want + 1] = ('"%s":%s'):format(k, k:sub(2)) end
      assert.are.equal("{" .. table.concat(want, ",") .. "}", encode(t))
    end)

    it("writes an array-marked table up to its length, nil as null", function()
      assert.are.equal("[1,null,3]", encode(core.array { 1, nil, 3 }))
      assert.are.equal("[1,2]", encode(core.array { 1, 2, x = "ignored" }))
    end)

    it("marks tables as arrays with core.array", function()
      local t = {}
      assert.are.equal(t, core.array(t))
      assert.are.equal(core.array_mt, getmetatable(t))
      assert.are.equal("kinformer.array", core.array_mt.__name)
      assert.matches("^kinformer.array: ", tostring(t))
      assert.are.equal(t, core.array(t)) -- twice is fine
      assert.has_error(function() core.array(setmetatable({}, {})) end)
      assert.has_error(function() core.array("x") end)
    end)

    local function fails(v, pattern)
      local s, err = encode(v)
      assert.is_nil(s)
      assert.is_string(err)
      assert.matches(pattern, err)
    end

    it("refuses NaN and infinities", function()
      fails(0 / 0, "^cannot encode NaN$")
      fails(math.huge, "^cannot encode inf$")
      fails({ a = { -math.huge } }, "^cannot encode %-inf at %.a%[1%]$")
    end)

    it("refuses functions, userdata and coroutines, and says where", function()
      fails(print, "^cannot encode a function$")
      fails({ spec = { template = print } }, "^cannot encode a function at %.spec%.template$")
      fails({ metadata = { labels = { ["app.kubernetes.io/name"] = { io.stdout } } } },
        '^cannot encode a userdata at %.metadata%.labels%["app%.kubernetes%.io/name"%]%[1%]$')
      fails({ coroutine.create(print) }, "^cannot encode a thread at %[1%]$")
    end)

    it("refuses tables whose keys are neither 1..n nor all strings", function()
      fails({ 1, 2, x = 3 }, "both string and integer keys")
      fails({ [1] = 1, [3] = 3 }, "not 1%.%.n")
      fails({ [0] = 0, 1 }, "not 1%.%.n")
      fails({ [1.5] = 1 }, "a non%-integer number key")
      fails({ [true] = 1 }, "a boolean key")
      fails({ ok = { [{}] = 1 } }, "a table key at %.ok$")
    end)

    it("refuses cyclic tables", function()
      local t = { metadata = {} }
      t.metadata.owner = t
      fails(t, "^nesting too deep %(a table that contains itself%?%) at %.metadata%.owner%.metadata")
      local a = {}
      a[1] = a
      fails(a, "^nesting too deep")
    end)

    it("raises on misuse", function()
      assert.has_error(function() encode() end)
    end)

    it("encodes a large list and reads it back", function()
      local items = core.array()
      for i = 1, 2000 do
        items[i] = { metadata = { name = "obj-" .. i, uid = i * 7919, labels = {} }, data = { ratio = i / 3 } }
      end
      local s = assert(encode { items = items, kind = "List" })
      local back = assert(decode(s))
      assert.are.equal(2000, #back.items)
      assert.are.equal(1999 * 7919, back.items[1999].metadata.uid)
      assert.are.equal(1999 / 3, back.items[1999].data.ratio)
      assert.are.equal(s, encode(back))
    end)
  end)
end)
