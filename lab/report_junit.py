"""A matrix as JUnit XML, for CI systems that show test results: one testsuite per target,
one testcase per cell. Failed verdicts are <failure> (type = the worst outcome), verdicts the
lab found inconsistent are <error>, skipped and unsupported cells, and cells whose every run
was lost to the infrastructure, are <skipped> (absences, not failures). Pure: render(matrix) -> str."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from lab.matrix import Matrix
from lab.render import run_detail
from lab.verdicts import FAILURES, INFRA, Verdict


def _kind(v: Verdict) -> str:
    if v.problems:
        return "error"
    if v.failed:
        return "failure"
    if v.worst in ("skipped", "unsupported", INFRA):
        return "skipped"
    return "passed"


def _seconds(v: Verdict) -> str:
    return f"{sum(r.duration_s for r in v.runs):.3f}"


def render(matrix: Matrix) -> str:
    root = ET.Element("testsuites", name=f"zmqlab run {matrix.run_id}")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for target in matrix.rows:
        verdicts = [v for v in matrix.row(target) if v is not None]
        kinds = [_kind(v) for v in verdicts]
        counts = {"tests": len(verdicts), "failures": kinds.count("failure"),
                  "errors": kinds.count("error"), "skipped": kinds.count("skipped")}
        suite = ET.SubElement(root, "testsuite", name=target, timestamp=matrix.created,
                              time=f"{sum(float(_seconds(v)) for v in verdicts):.3f}",
                              **{k: str(n) for k, n in counts.items()})
        for k, n in counts.items():
            totals[k] += n
        for v, kind in zip(verdicts, kinds):
            case = ET.SubElement(suite, "testcase", classname=f"zmqlab.{target}",
                                 name="/".join(v.cell.column), time=_seconds(v))
            if kind == "failure":
                detail = "\n".join(f"run {i}: {run_detail(r)}" for i, r in enumerate(v.runs, 1)
                                   if r.outcome in FAILURES)
                ET.SubElement(case, "failure", message=v.summary_line(), type=v.worst).text = detail
            elif kind == "error":
                ET.SubElement(case, "error", message=v.summary_line(), type="inconsistent").text = \
                    "\n".join(v.problems)
            elif kind == "skipped":
                ET.SubElement(case, "skipped", message=v.summary_line())
            ET.SubElement(case, "system-out").text = v.summary_line()
    for k, n in totals.items():
        root.set(k, str(n))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
