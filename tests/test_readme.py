"""The user guide (README.md and the pages under docs/) stays true to the code and to itself.

- Every message the pack can raise at a user (its own error classes, and the
  strings nodes' VALIDATE_INPUTS return) has a troubleshooting entry: a table row
  in docs/troubleshooting.md whose first cell quotes a distinctive fragment of it.
- Every quote in those rows still matches something the code says (no entry for
  a message that no longer exists).
- Every node has its own section in docs/nodes.md (its display name as a heading)
  naming each of its inputs and outputs.
- Every link between the README and the docs pages leads to a file, and to a heading, that exist.
- The README stays an artist's page: short, with the two commands and a link to every docs page; the
  developers' page gives the test commands CI runs.

Quotes are inline code spans in the first cell of a table row; a quote may skip
the variable parts of a message with "...", e.g. `the insightface model pack ... was not found`.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
NODES = DOCS / "nodes.md"
DEVELOPERS = DOCS / "developers.md"
README_MAX_LINES = 300
# folders of the repository that are not part of the node pack
NOT_PACK = {"tests", "bench", "tools", "scripts", "docs", "workflows", "shared"}
HOLE = "\x00"  # stands for the variable parts of a message


def _pack_files() -> list:
    files = [REPO / "__init__.py"]
    for folder in sorted(p for p in REPO.iterdir() if p.is_dir()):
        if folder.name.startswith(".") or folder.name in NOT_PACK:
            continue
        files += sorted(folder.rglob("*.py"))
    return [f for f in files if f.is_file()]


def _error_classes(trees: dict) -> set:
    """Names of the exception classes the pack defines for its users (``...Error``)."""
    return {node.name for tree in trees.values() for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error")}


def _assignments(function) -> dict:
    """name -> string expression, for names assigned once in a function (``message = f"..."``)."""
    found: dict = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found.setdefault(node.targets[0].id, []).append(node.value)
    return {k: v[0] for k, v in found.items() if len(v) == 1}


def _text(node, names: dict) -> str:
    """The literal text of a string expression, with HOLE for every part only known at run time."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v, names) if isinstance(v, ast.Constant) else HOLE for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left, names) + _text(node.right, names)
    if isinstance(node, ast.Name) and node.id in names:
        return _text(names[node.id], {})
    return HOLE


def _functions_with_parents(tree):
    """(function or module, node) pairs: the innermost function around each node."""
    stack = [(tree, tree)]
    while stack:
        scope, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            yield inner, child
            stack.append((inner, child))


def _collect():
    trees = {f: ast.parse(f.read_text(encoding="utf-8"), filename=str(f)) for f in _pack_files()}
    classes = _error_classes(trees)
    messages, literals = [], []
    for path, tree in trees.items():
        where = path.relative_to(REPO)
        scopes: dict = {}
        for scope, node in _functions_with_parents(tree):
            if isinstance(node, (ast.Constant, ast.JoinedStr, ast.BinOp)):
                text = _text(node, {})
                if text.strip(HOLE):
                    literals.append(text)
            message = None
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in classes and node.exc.args:
                    message = node.exc.args[0]
            elif (isinstance(node, ast.Return) and isinstance(scope, ast.FunctionDef)
                  and scope.name == "VALIDATE_INPUTS" and node.value is not None):
                value = node.value.elts[0] if isinstance(node.value, ast.Tuple) and node.value.elts else node.value
                if not (isinstance(value, ast.Constant) and not isinstance(value.value, str)):
                    message = value
            if message is None:
                continue
            if id(scope) not in scopes:
                scopes[id(scope)] = _assignments(scope)
            text = _text(message, scopes[id(scope)])
            if text.startswith("internal:"):
                continue  # a bug, not something the user can fix
            if not text.strip(HOLE):
                continue  # passes on a message made elsewhere (e.g. ``return str(error)``), checked where it is made
            messages.append((f"{where}:{node.lineno}", text))
    return messages, literals


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _matches(quote: str, text: str) -> bool:
    """Every '...'-separated piece of the quote appears in the text, in order, outside its variable parts."""
    pos, text = 0, _normal(text)
    for piece in (p.strip() for p in re.split(r"\.\.\.|…", quote)):
        if not piece:
            continue
        found = text.find(piece, pos)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def _section(markdown: str, title: str) -> str:
    """The text under the first heading named ``title`` up to the next heading of the same or a higher level."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(#+)\s+(.*?)\s*$", line)
        if m and m.group(2) == title:
            level, out = len(m.group(1)), []
            for rest in lines[i + 1:]:
                n = re.match(r"(#+)\s", rest)
                if n and len(n.group(1)) <= level:
                    break
                out.append(rest)
            return "\n".join(out)
    raise AssertionError(f"no section '{title}'")


def _troubleshooting_quotes() -> list:
    quotes = []
    for line in TROUBLESHOOTING.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|") or re.match(r"\|\s*:?-", line):
            continue
        first = line.split("|")[1]
        quotes += [_normal(q) for q in re.findall(r"`([^`]+)`", first)]
    return quotes


MESSAGES, LITERALS = _collect()
QUOTES = _troubleshooting_quotes()


def test_the_scan_finds_the_pack_messages():
    # guards the scan itself: it must see the well-known messages of each part of the pack
    texts = " ".join(t for _, t in MESSAGES)
    for known in ("is not a readable .safetensors file", "was not found", "has a usable face",
                  "exists already", "is not in any models/sia folder"):
        assert known in texts
    assert len(MESSAGES) > 40 and len(QUOTES) > 20


def test_every_user_facing_message_has_a_troubleshooting_entry():
    missing = [f"{where}: {_normal(text).replace(HOLE, '<...>')}" for where, text in MESSAGES
               if not any(_matches(q, text) for q in QUOTES)]
    assert not missing, ("these messages have no row in docs/troubleshooting.md quoting a fragment of "
                         "them (first cell, in backticks):\n" + "\n".join(missing))


def test_every_troubleshooting_quote_is_still_said_by_the_code():
    stale = [q for q in QUOTES if not any(_matches(q, t) for t in LITERALS)]
    assert not stale, "docs/troubleshooting.md quotes that no code says any more:\n" + "\n".join(stale)


def _node_sections() -> dict:
    nodes = _section(NODES.read_text(encoding="utf-8"), "Nodes")
    out, current = {}, None
    for line in nodes.splitlines():
        m = re.match(r"##\s+(.*?)\s*$", line)
        if m:
            current = m.group(1)
            out[current] = []
        elif current:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def node_mappings():
    from comfyui_personalvideo import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    return NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS


def test_every_node_and_every_input_is_in_the_guide(node_mappings):
    classes, display = node_mappings
    sections = _node_sections()
    problems = []
    for node_id, cls in classes.items():
        title = display[node_id]
        if title not in sections:
            problems.append(f"no '## {title}' section in docs/nodes.md")
            continue
        text = sections[title]
        spec = cls.INPUT_TYPES()
        names = [n for group in ("required", "optional") for n in spec.get(group, {})]
        names += list(getattr(cls, "RETURN_NAMES", None) or ())
        problems += [f"'{title}' section does not name `{n}`" for n in names if f"`{n}`" not in text]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- the pages and their links
def _guide_pages() -> list:
    return [README, REPO / "workflows" / "README.md"] + sorted(DOCS.glob("*.md"))


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set:
    seen: dict = {}
    out = set()
    fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        m = None if fence else re.match(r"#+\s+(.*?)\s*$", line)
        if m:
            slug = _anchor(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text)


def test_every_link_between_the_pages_leads_somewhere():
    broken = []
    for page in _guide_pages():
        for target in _links(page):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target} (no such file)")
            elif anchor and (dest.suffix != ".md" or anchor not in _anchors(dest)):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_an_artists_page_that_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for command in ("bash scripts/main_job", "bash scripts/test"):
        assert command in text
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in _links(README)}
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_developers_page_gives_the_test_commands_ci_runs():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if "scripts/test" in line and not line.lstrip().startswith("#")]
    assert commands
    page = DEVELOPERS.read_text(encoding="utf-8")
    assert [c for c in commands if c not in page] == []
