--[[ crossref.lua: the parts of Quarto that the report uses, for plain pandoc.

Used by `nowcast report` when Quarto is not installed (Quarto does all of this itself):
  * conditional content: ::: {.content-visible when-format="html"} and .content-hidden
  * numbering of figures (#fig-...), tables (#tbl-...) and sections, with "Figure n:" /
    "Table n:" caption prefixes in HTML (typst numbers its figures itself)
  * cross-references @fig-x, @tbl-x, @sec-x: a link "Figure n" in HTML, a native typst
    reference in typst; an unknown id becomes "??" and a warning, never a typst error.
Run it before --citeproc, so that cross-references are not taken for citations.
]]

local is_html = FORMAT:match("html") ~= nil
local is_typst = FORMAT:match("typst") ~= nil
local stringify = pandoc.utils.stringify

local function format_matches(f)
  if f == "html" or f == "html5" or f == "html:js" then return is_html end
  if f == "pdf" or f == "typst" then return is_typst or FORMAT:match("latex") ~= nil end
  return FORMAT:match(f) ~= nil
end

local function condition(el)
  local ok = true
  local wf, uf = el.attributes["when-format"], el.attributes["unless-format"]
  if wf then ok = format_matches(wf) end
  if uf then ok = ok and not format_matches(uf) end
  return ok
end

-- Quarto's content-visible / content-hidden, on blocks (Div) and inlines (Span) alike
local function visibility(el)
  if el.classes:includes("content-visible") then
    if condition(el) then return el.content else return {} end
  elseif el.classes:includes("content-hidden") then
    if condition(el) then return {} else return el.content end
  end
end

local conditional = { Div = visibility, Span = visibility }

local refs = {}   -- id -> {kind=, num=, title=}
local counters = { fig = 0, tbl = 0 }
local sec = { 0, 0, 0, 0, 0, 0 }

local function prefix_caption(caption, label)
  local lead = { pandoc.Strong({ pandoc.Str(label .. ":") }), pandoc.Space() }
  local long = caption.long
  if #long > 0 and (long[1].t == "Plain" or long[1].t == "Para") then
    local content = long[1].content
    for i = #lead, 1, -1 do content:insert(1, lead[i]) end
  else
    long:insert(1, pandoc.Plain(lead))
  end
  return caption
end

-- number a figure or table; in HTML its caption gets "Figure n" / "Table n" (typst numbers its own)
local function count_float(el, kind, label)
  counters[kind] = counters[kind] + 1
  if el.identifier ~= "" then refs[el.identifier] = { kind = kind, num = tostring(counters[kind]) } end
  if is_html and #el.caption.long > 0 then
    el.caption = prefix_caption(el.caption, label .. " " .. counters[kind])
    return el
  end
end

local numbering = {
  traverse = "topdown",
  Header = function(el)
    local unnumbered = el.classes:includes("unnumbered")
    local entry = { kind = "sec", title = stringify(el.content) }
    if not unnumbered then
      sec[el.level] = sec[el.level] + 1
      for l = el.level + 1, #sec do sec[l] = 0 end
      local parts = {}
      for l = 1, el.level do parts[#parts + 1] = tostring(sec[l]) end
      entry.num = table.concat(parts, ".")
    end
    if el.identifier ~= "" then refs[el.identifier] = entry end
  end,
  -- every figure and table counts, with or without id or caption, as in typst's numbering
  Figure = function(el) return count_float(el, "fig", "Figure") end,
  Table = function(el) return count_float(el, "tbl", "Table") end,
}

local NAMES = { fig = "Figure", tbl = "Table", sec = "Section", eq = "Equation" }

local function is_crossref(id)
  return id:match("^fig%-") or id:match("^tbl%-") or id:match("^sec%-") or id:match("^eq%-")
end

local function ref_inline(id)
  local r = refs[id]
  if not r then
    io.stderr:write("crossref.lua: unknown reference @" .. id .. "\n")
    return pandoc.Strong({ pandoc.Str("??") })
  end
  if r.kind == "sec" and not r.num then
    return pandoc.Link({ pandoc.Str(r.title) }, "#" .. id)
  end
  if is_typst then
    return pandoc.RawInline("typst", "@" .. id)
  end
  return pandoc.Link({ pandoc.Str(NAMES[r.kind]), pandoc.Str("\u{a0}" .. r.num) }, "#" .. id)
end

local references = {
  Cite = function(el)
    local any = false
    for _, c in ipairs(el.citations) do
      if is_crossref(c.id) then any = true end
    end
    if not any then return nil end
    local out = pandoc.List()
    for i, c in ipairs(el.citations) do
      if i > 1 then out:insert(pandoc.Str(",")); out:insert(pandoc.Space()) end
      if is_crossref(c.id) then
        out:extend(c.prefix)
        if #c.prefix > 0 then out:insert(pandoc.Space()) end
        out:insert(ref_inline(c.id))
        out:extend(c.suffix)
      else
        out:insert(pandoc.Cite({ c }, { pandoc.Str("@" .. c.id) }))
      end
    end
    return out
  end,
}

-- typst resolves image paths against the .typ file (written to _generated/); a leading "/"
-- makes them relative to the compile root, the report folder, as in the sources.
local typst_paths = {
  Image = function(el)
    if is_typst and not el.src:match("^/") and not el.src:match("^%a[%w+.-]*:") then
      el.src = "/" .. el.src
      return el
    end
  end,
}

function Pandoc(doc)
  doc = doc:walk(conditional)
  doc = doc:walk(typst_paths)
  doc = doc:walk(numbering)
  doc = doc:walk(references)
  return doc
end
