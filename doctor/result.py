"""What one check says: a status, what was found, and what to do about it."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

OK, WARN, FAIL = "ok", "warn", "fail"
STATUSES = (OK, WARN, FAIL)
RULE = ("fail: training cannot run until it is fixed (the command exits with code 1). "
        "warn: training runs, but not the way the example workflows intend, or slower.")


@dataclass
class CheckResult:
    name: str                 # what was checked, e.g. "onnxruntime"
    status: str               # ok / warn / fail
    message: str              # what was found
    fix: str = ""             # what to do (empty when nothing needs doing)
    details: dict = field(default_factory=dict)  # machine-readable facts for the JSON report

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def ok(name, message, fix="", **details) -> CheckResult:
    return CheckResult(name, OK, message, fix, details)


def warn(name, message, fix="", **details) -> CheckResult:
    return CheckResult(name, WARN, message, fix, details)


def fail(name, message, fix="", **details) -> CheckResult:
    return CheckResult(name, FAIL, message, fix, details)


@dataclass
class Report:
    results: list

    @property
    def failed(self) -> list:
        return [r for r in self.results if r.status == FAIL]

    @property
    def warned(self) -> list:
        return [r for r in self.results if r.status == WARN]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        if self.failed:
            return (f"{len(self.failed)} problem(s) block training: "
                    + ", ".join(r.name for r in self.failed) + ". Fix the lines marked FAIL.")
        if self.warned:
            return f"Training can run; {len(self.warned)} warning(s) to look at."
        return "Everything PersonalVideo needs is in place."

    def text(self) -> str:
        width = max((len(r.name) for r in self.results), default=0)
        lines = ["PersonalVideo doctor"]
        for r in self.results:
            head = f"[{r.status.upper():>4}] {r.name.ljust(width)}  "
            body = r.message.splitlines() or [""]
            lines.append(head + body[0])
            lines.extend(" " * len(head) + more for more in body[1:])
            if r.fix:
                fix = r.fix.splitlines()
                lines.append(" " * len(head) + "-> " + fix[0])
                lines.extend(" " * (len(head) + 3) + more for more in fix[1:])
        lines.append("")
        lines.append(self.summary())
        lines.append(RULE)
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"exit_code": self.exit_code, "summary": self.summary(), "text": self.text(),
                "checks": [asdict(r) for r in self.results]}

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)
