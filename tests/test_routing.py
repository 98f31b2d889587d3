"""edge.routing: path templates, the route table, request path splitting, upstream paths."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from edge.routing import BadPath, PathBuilder, RouteTable, TemplateError, parse_template, split_path

# ------------------------------------------------------------------------ parse_template

TEMPLATE_ERRORS = [
    ("x", "path template must start with '/', got 'x'"),
    ("", "path template must start with '/', got ''"),
    ("/a?b=1", "path template must not contain a query or fragment"),
    ("/a#top", "path template must not contain a query or fragment"),
    ("/a//b", "empty segment in path template '/a//b'"),
    ("//", "empty segment in path template '//'"),
    ("/a/./b", "path template must not contain '.' or '..' segments"),
    ("/a/../b", "path template must not contain '.' or '..' segments"),
    ("/{bad-name}", "bad parameter in segment '{bad-name}': expected '{name}' with name made "
                    "of letters, digits and '_'"),
    ("/{1x}", "bad parameter in segment '{1x}': expected '{name}' with name made of letters, "
              "digits and '_'"),
    ("/{}", "bad parameter in segment '{}': expected '{name}' with name made of letters, "
            "digits and '_'"),
    ("/{a", "bad parameter in segment '{a': expected '{name}' with name made of letters, "
            "digits and '_'"),
    ("/a}", "bad parameter in segment 'a}': expected '{name}' with name made of letters, "
            "digits and '_'"),
    ("/{a}}", "bad parameter in segment '{a}}'"),
    ("/{a}{b}", "segment '{a}{b}' has more than one parameter"),
    ("/{a}/{a}", "parameter 'a' appears twice in '/{a}/{a}'"),
    ("/{a}/{b}/{a}.jpg", "parameter 'a' appears twice in '/{a}/{b}/{a}.jpg'"),
    ("/{rest...}/x", "'{rest...}' must be a whole, last segment"),
    ("/x{rest...}", "'{rest...}' must be a whole, last segment"),
    ("/{rest...}.jpg", "'{rest...}' must be a whole, last segment"),
]


@pytest.mark.parametrize(("text", "message"), TEMPLATE_ERRORS)
def test_parse_template_errors(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as exc:
        parse_template(text)
    assert str(exc.value) == message


TEMPLATES = [
    ("/", [], ()),
    ("/a/", ["lit", "lit"], ()),
    ("/members/{member_id}", ["lit", "param"], ("member_id",)),
    ("/p/{photo}.jpg", ["lit", "affix"], ("photo",)),
    ("/p/v-{n}", ["lit", "affix"], ("n",)),
    ("/files/{rest...}", ["lit", "tail"], ("rest",)),
]


@pytest.mark.parametrize(("text", "kinds", "params"), TEMPLATES)
def test_parse_template(text: str, kinds: list[str], params: tuple[str, ...]) -> None:
    template = parse_template(text)
    assert [s.kind for s in template.segments] == kinds
    assert template.params == params
    assert template.text == text


# ---------------------------------------------------------------------------- RouteTable


def table(*routes: str) -> RouteTable[str]:
    """A table of 'METHOD /template' strings, each mapped to itself."""
    t: RouteTable[str] = RouteTable()
    for route in routes:
        method, template = route.split(" ")
        t.add(method, parse_template(template), route)
    return t


def request(t: RouteTable[str], req: str) -> tuple[str | None, dict[str, str]]:
    method, path = req.split(" ")
    m = t.match(method, split_path(path))
    return m.route, m.params


MATCHES = [
    # literal > affix > param > tail, at the first depth ...
    (["GET /a/{x}", "GET /a/b"], "GET /a/b", "GET /a/b", {}),
    (["GET /a/{x}", "GET /a/b"], "GET /a/c", "GET /a/{x}", {"x": "c"}),
    (["GET /a/{x}.jpg", "GET /a/logo.jpg"], "GET /a/logo.jpg", "GET /a/logo.jpg", {}),
    (["GET /a/{x}", "GET /a/{x}.jpg"], "GET /a/p.jpg", "GET /a/{x}.jpg", {"x": "p"}),
    (["GET /a/{x}", "GET /a/{x}.jpg"], "GET /a/p.png", "GET /a/{x}", {"x": "p.png"}),
    (["GET /a/{rest...}", "GET /a/{x}"], "GET /a/b", "GET /a/{x}", {"x": "b"}),
    (["GET /a/{rest...}", "GET /a/{x}"], "GET /a/b/c", "GET /a/{rest...}", {"rest": "b/c"}),
    (["GET /a/{rest...}", "GET /a/{x}.jpg"], "GET /a/b.jpg", "GET /a/{x}.jpg", {"x": "b"}),
    # ... and at a deeper one
    (["GET /a/{x}/{y}", "GET /a/{x}/c"], "GET /a/b/c", "GET /a/{x}/c", {"x": "b"}),
    (["GET /a/{x}/{y}", "GET /a/{x}/{y}.txt"], "GET /a/b/c.txt", "GET /a/{x}/{y}.txt",
     {"x": "b", "y": "c"}),
    (["GET /a/{x}/{rest...}", "GET /a/{x}/{y}"], "GET /a/b/c/d", "GET /a/{x}/{rest...}",
     {"x": "b", "rest": "c/d"}),
    # longer affixes are tried first; an affix needs a non-empty value
    (["GET /i/{id}.jpg", "GET /i/{id}.thumb.jpg"], "GET /i/7.thumb.jpg",
     "GET /i/{id}.thumb.jpg", {"id": "7"}),
    (["GET /i/{id}.jpg", "GET /i/{id}.thumb.jpg"], "GET /i/7.jpg", "GET /i/{id}.jpg",
     {"id": "7"}),
    (["GET /i/{id}.jpg", "GET /i/{x}"], "GET /i/.jpg", "GET /i/{x}", {"x": ".jpg"}),
    # backtracking: a more specific branch that dead-ends gives way to a less specific one
    (["GET /a/{x}/c", "GET /a/b/d"], "GET /a/b/c", "GET /a/{x}/c", {"x": "b"}),
    (["GET /a/b/c", "GET /a/{rest...}"], "GET /a/b/d", "GET /a/{rest...}", {"rest": "b/d"}),
    (["GET /a/{k}.jpg/c", "GET /a/{x}/d"], "GET /a/p.jpg/d", "GET /a/{x}/d", {"x": "p.jpg"}),
    (["GET /a/b", "POST /a/{x}"], "POST /a/b", "POST /a/{x}", {"x": "b"}),
    # values are decoded once
    (["GET /a/{x}"], "GET /a/caf%C3%A9", "GET /a/{x}", {"x": "café"}),
    (["GET /a/{x}"], "GET /a/%2541", "GET /a/{x}", {"x": "%41"}),
    (["GET /a/{x}"], "GET /a/" + "v" * 256, "GET /a/{x}", {"x": "v" * 256}),
    (["GET /"], "GET /", "GET /", {}),
    # no match
    (["GET /a/b"], "GET /a/c", None, {}),
    (["GET /a/b"], "GET /a/b/c", None, {}),
    (["GET /a/b"], "GET /a", None, {}),
    (["GET /a"], "GET /a/", None, {}),  # a trailing slash is a different path ...
    (["GET /a/"], "GET /a/", "GET /a/", {}),  # ... that a template can name
    (["GET /a/{x}/c"], "GET /a//c", None, {}),  # an empty segment never fills a parameter
    (["GET /a/{rest...}"], "GET /a/b//c", None, {}),  # nor part of a tail
    (["GET /f/{rest...}"], "GET /f", None, {}),  # a tail needs at least one segment
    (["GET /f/{rest...}"], "GET /f/", None, {}),
    (["GET /a/{x}"], "GET /a/" + "v" * 257, None, {}),  # longer than MAX_PARAM_LENGTH
]


@pytest.mark.parametrize("order", [1, -1], ids=["in-order", "reversed"])
@pytest.mark.parametrize(("routes", "req", "route", "params"), MATCHES)
def test_most_specific_wins(routes: list[str], req: str, route: str | None,
                            params: dict[str, str], order: int) -> None:
    assert request(table(*routes[::order]), req) == (route, params)


HEAD = [
    (["GET /a"], "/a", "GET /a"),
    (["GET /a", "HEAD /a"], "/a", "HEAD /a"),
    (["GET /f/{rest...}"], "/f/x/y", "GET /f/{rest...}"),
    (["GET /a/b", "HEAD /a/{x}"], "/a/b", "GET /a/b"),  # the most specific path still wins
]


@pytest.mark.parametrize(("routes", "path", "route"), HEAD)
def test_head_is_served_by_get_routes(routes: list[str], path: str, route: str) -> None:
    assert request(table(*routes), f"HEAD {path}")[0] == route


ALLOWED = [
    (["GET /a", "POST /a"], "DELETE /a", ("GET", "POST")),
    (["GET /a"], "POST /a", ("GET",)),
    (["GET /a/b", "POST /a/{x}"], "PUT /a/b", ("GET", "POST")),
    (["GET /a/b", "POST /a/{x}"], "PUT /a/c", ("POST",)),
    (["GET /f/{rest...}"], "POST /f/x/y", ("GET",)),
    (["GET /a/{x}.jpg", "PUT /a/{x}"], "DELETE /a/p.jpg", ("GET", "PUT")),
    (["GET /a"], "POST /b", ()),  # no path matched: a 404, not a 405
]


@pytest.mark.parametrize(("routes", "req", "allowed"), ALLOWED)
def test_wrong_method_lists_allowed_methods(routes: list[str], req: str,
                                            allowed: tuple[str, ...]) -> None:
    method, path = req.split(" ")
    m = table(*routes).match(method, split_path(path))
    assert (m.route, m.params, m.allowed) == (None, {}, allowed)


@pytest.mark.parametrize(("first", "second"), [
    ("GET /a/{x}", "GET /a/{y}"),
    ("GET /a/{x}.jpg", "GET /a/{y}.jpg"),
    ("GET /f/{a...}", "GET /f/{b...}"),
    ("GET /a/b", "GET /a/b"),
])
def test_add_refuses_a_collision(first: str, second: str) -> None:
    t = table(first)
    method, template = second.split(" ")
    with pytest.raises(KeyError):
        t.add(method, parse_template(template), second)
    assert t.find(method, parse_template(template)) == first


@pytest.mark.parametrize("routes", [
    ["GET /a/{x}", "POST /a/{x}"],
    ["GET /a/{x}", "GET /a/{x}.jpg"],
    ["GET /a/{x}", "GET /a/{x...}"],
    ["GET /a", "GET /a/"],
    ["GET /a/{x}.jpg", "GET /a/{x}.png"],
])
def test_add_accepts_different_shapes(routes: list[str]) -> None:
    table(*routes)


# Each route must receive its own parameter names: the app builds the upstream path and
# checks `allow: {equals: '{member_id}'}` with them.
PARAM_NAMES = [
    (["GET /o/{order_id}", "DELETE /o/{id}"], "GET /o/1", {"order_id": "1"}),
    (["GET /o/{order_id}", "GET /o/{id}/items"], "GET /o/1", {"order_id": "1"}),
    (["GET /p/{a}.jpg", "POST /p/{b}.jpg"], "POST /p/x.jpg", {"b": "x"}),
    (["GET /f/{rest...}", "POST /f/{path...}"], "GET /f/x/y", {"rest": "x/y"}),
]


@pytest.mark.parametrize(("routes", "req", "params"), PARAM_NAMES)
def test_routes_sharing_a_node_keep_their_param_names(routes: list[str], req: str,
                                                      params: dict[str, str]) -> None:
    assert request(table(*routes), req)[1] == params


# ---------------------------------------------------------------------------- split_path

SPLIT = [
    ("/", []),
    ("/a", ["a"]),
    ("/a/b", ["a", "b"]),
    ("/a/", ["a", ""]),
    ("//", ["", ""]),
    ("/a//b", ["a", "", "b"]),  # kept: no template matches an empty segment
    ("/a%20b", ["a b"]),
    ("/caf%C3%A9", ["café"]),
    ("/%2541", ["%41"]),  # decoded exactly once
    ("/%252F", ["%2F"]),
    ("/%zz", ["%zz"]),  # not an escape: kept as it is
    ("/a+b", ["a+b"]),  # '+' is not a space in a path
    ("/...", ["..."]),
    ("/.a", [".a"]),
]


@pytest.mark.parametrize(("raw", "segments"), SPLIT)
def test_split_path(raw: str, segments: list[str]) -> None:
    assert split_path(raw) == segments


SPLIT_REFUSED = [
    ("", "path must start with '/'"),
    ("a/b", "path must start with '/'"),
    ("/a%2Fb", "path segment 'a%2Fb' is not allowed"),
    ("/a%2fb", "path segment 'a%2fb' is not allowed"),
    ("/a%5Cb", "path segment 'a%5Cb' is not allowed"),
    ("/a\\b", "path segment 'a\\\\b' is not allowed"),
    ("/.", "path segment '.' is not allowed"),
    ("/a/..", "path segment '..' is not allowed"),
    ("/a/../b", "path segment '..' is not allowed"),
    ("/%2e", "path segment '%2e' is not allowed"),
    ("/a/%2E%2e/b", "path segment '%2E%2e' is not allowed"),
    ("/a/.%2E", "path segment '.%2E' is not allowed"),
    ("/%00", "path segment '%00' is not allowed"),
    ("/a%0Ab", "path segment 'a%0Ab' is not allowed"),
    ("/a%0d", "path segment 'a%0d' is not allowed"),
    ("/a\x01", "path segment 'a\\x01' is not allowed"),
    ("/%7F", "path segment '%7F' is not allowed"),
]


@pytest.mark.parametrize(("raw", "message"), SPLIT_REFUSED)
def test_split_path_refuses(raw: str, message: str) -> None:
    with pytest.raises(BadPath) as exc:
        split_path(raw)
    assert str(exc.value) == message


@pytest.mark.parametrize("raw", ["/%ff", "/a/%C3", "/%e2%82"])
def test_split_path_invalid_utf8_raises_unicode_error(raw: str) -> None:
    # Not BadPath: the app catches UnicodeDecodeError separately ("path is not valid UTF-8").
    with pytest.raises(UnicodeDecodeError):
        split_path(raw)


# --------------------------------------------------------------------------- PathBuilder

BUILDS = [
    ("/members/{id}", {"id": "1001"}, "/members/1001"),
    ("/members/{id}", {"id": "a/b"}, "/members/a%2Fb"),
    ("/members/{id}", {"id": "a?b#c"}, "/members/a%3Fb%23c"),
    ("/members/{id}", {"id": "100% sure"}, "/members/100%25%20sure"),
    ("/members/{id}", {"id": "a&b=c+d"}, "/members/a&b=c+d"),  # legal in a path segment
    ("/members/{id}", {"id": "café"}, "/members/caf%C3%A9"),
    ("/members/{id}", {"id": "%41"}, "/members/%2541"),
    ("/p/{id}.jpg", {"id": "x y"}, "/p/x%20y.jpg"),
    ("/claims?member_id={id}", {"id": "1001"}, "/claims?member_id=1001"),
    ("/claims?member_id={id}&x=1", {"id": "1&admin=true"},
     "/claims?member_id=1%26admin%3Dtrue&x=1"),
    ("/claims?member_id={id}", {"id": "a+b c#d%e?f/g"},
     "/claims?member_id=a%2Bb%20c%23d%25e%3Ff/g"),
    ("/files/{rest...}", {"rest": "a/b/c.txt"}, "/files/a/b/c.txt"),
    ("/files/{rest...}", {"rest": "a b/c?d/e#f/100%"}, "/files/a%20b/c%3Fd/e%23f/100%25"),
    ("/files/{rest...}?v=1", {"rest": "x/y"}, "/files/x/y?v=1"),
]


@pytest.mark.parametrize(("source", "params", "built"), BUILDS)
def test_path_builder(source: str, params: dict[str, str], built: str) -> None:
    assert PathBuilder.compile(source).build(params) == built


def test_path_builder_params() -> None:
    builder = PathBuilder.compile("/m/{member_id}/f/{rest...}?q={q}")
    assert builder.params == ("member_id", "rest", "q")


NASTY = ["a/b", "../x", "a?b=c", "#frag", "%2F", "a b", "a&b", "x=y", "a+b", "?&=+#/%",
         "\u00e9\u4e2d", "a;b", "@:"]


@pytest.mark.parametrize("value", NASTY)
def test_built_path_stays_inside_its_template(value: str) -> None:
    built = PathBuilder.compile("/u/{id}/profile?q={q}&r=1").build({"id": value, "q": value})
    parts = urlsplit(built)
    segments = parts.path.split("/")
    assert segments[:2] == ["", "u"] and segments[3:] == ["profile"]
    assert unquote(segments[2]) == value
    assert parse_qsl(parts.query, keep_blank_values=True) == [("q", value), ("r", "1")]
    assert parts.fragment == ""


@pytest.mark.parametrize("raw", ["/img/...png", "/img/..png"])
def test_affixed_value_cannot_become_a_dot_segment(raw: str) -> None:
    t = table("GET /img/{name}.png")
    m = t.match("GET", split_path(raw))
    if m.route is None:
        return  # refusing the request is fine too
    built = PathBuilder.compile("/images/{name}/original.png").build(m.params)
    assert built.split("/")[2] not in (".", "..")
