-- nltrace's packet comments as fields, for Wireshark columns and filters:
-- nltrace.pid, .tid, .comm, .handler, .errno, .func, .duration_ns, .tree.
-- Install: copy to ~/.local/lib/wireshark/plugins/ (or tshark -X lua_script:nltrace.lua).
local proto = Proto("nltrace", "nltrace facts")
local comment = Field.new("frame.comment")
local kinds = {pid = ftypes.UINT32, tid = ftypes.UINT32, comm = ftypes.STRING, handler = ftypes.STRING,
               errno = ftypes.STRING, func = ftypes.STRING, duration_ns = ftypes.UINT64, tree = ftypes.UINT32}
local fields = {}
for name, kind in pairs(kinds) do
    fields[name] = ProtoField.new(name, "nltrace." .. name, kind)
    proto.fields[#proto.fields + 1] = fields[name]
end

function proto.dissector(_, _, tree)
    local text = comment()
    if not text then return end
    local facts = tostring(text.value):match("^[^\n]*")
    local sub
    for key, value in facts:gmatch("(%w[%w_]*)=(%S+)") do
        if fields[key] then
            sub = sub or tree:add(proto)
            local kind = kinds[key]
            sub:add(fields[key], kind == ftypes.STRING and value or (kind == ftypes.UINT64 and UInt64(value)
                    or tonumber(value)))
        end
    end
end

register_postdissector(proto)
