"""Every error code the ledger and the API emit, found in their source (issue 19's error catalogue is held to it)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("ledger", "api", "projections", "feed")
# The calls that make an error, and the index of their code among the positional arguments.
MAKERS = {
    "one": 0,
    "Problem": 0,
    "forbidden": 0,
    "_reject": 0,
    "_bad": 0,
    "_malformed": 0,
    "_not_found": 0,
    "reject": 0,
    "Refusal": 1,
    "Failure": 1,
    "UpnCheck": -1,
    "_problem": 0,
    "refuse": 0,
    "problem": 0,
}
CATEGORY_OF_MAKER = {"_malformed": "malformed", "_not_found": "not_found", "forbidden": "forbidden"}
STATUS_CATEGORY = {
    400: "malformed",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
    504: "unconfirmed",
    507: "insufficient_storage",
}


@dataclass(frozen=True)
class Found:
    code: str
    category: str | None
    message: str
    where: str


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _text(node: ast.expr | None) -> str:
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
            for v in node.values
            if isinstance(v, (ast.Constant, ast.FormattedValue))
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    return "{" + ast.unparse(node) + "}"


def _category(call: ast.Call, maker: str) -> str | None:
    for node in [*call.args, *(k.value for k in call.keywords)]:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Category":
            return node.attr.lower()
    if maker in ("Refusal", "Failure") and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, int):
        return STATUS_CATEGORY.get(call.args[0].value)
    return CATEGORY_OF_MAKER.get(maker)


def scan() -> list[Found]:
    found = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"))
            where = str(path.relative_to(ROOT))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    maker = _name(node.func)
                    if maker not in MAKERS:
                        continue
                    index = MAKERS[maker]
                    code_node = next((k.value for k in node.keywords if k.arg == "code"), None)
                    if code_node is None and 0 <= index < len(node.args):
                        code_node = node.args[index]
                    if not (isinstance(code_node, ast.Constant) and isinstance(code_node.value, str)):
                        continue
                    message = next((k.value for k in node.keywords if k.arg == "message"), None)
                    offset = 1 if maker == "Failure" else 2  # Failure(status, code, message); the others have a path first
                    if message is None and index >= 0 and len(node.args) > index + offset:
                        message = node.args[index + offset]
                    found.append(Found(code_node.value, _category(node, maker), _text(message), f"{where}:{node.lineno}"))
                elif isinstance(node, ast.FunctionDef) and node.name.endswith("_problem"):  # returns (code, message) or None
                    for pair in ast.walk(node):
                        if (
                            isinstance(pair, ast.Tuple)
                            and len(pair.elts) == 2
                            and isinstance(pair.elts[0], ast.Constant)
                            and isinstance(pair.elts[0].value, str)
                            and isinstance(pair.elts[1], (ast.JoinedStr, ast.Constant))
                        ):
                            found.append(Found(pair.elts[0].value, None, _text(pair.elts[1]), f"{where}:{pair.lineno}"))
                elif isinstance(node, ast.Dict) and top == "api":  # {"code": ..., "path": ..., "message": ...} written out by the API
                    keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
                    if "code" in keys and "message" in keys:
                        values = dict(zip(keys, node.values, strict=False))
                        if isinstance(values["code"], ast.Constant) and isinstance(values["code"].value, str):
                            found.append(Found(values["code"].value, None, _text(values["message"]), f"{where}:{node.lineno}"))
                elif (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == "code"
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                ):
                    found.append(Found(node.value.value, None, "", f"{where}:{node.lineno}"))
    return found
