"""JUnit XML, as pytest (xunit1/xunit2) and Node's junit reporter write it: the preferred source.

pytest subtests (pytest >= 9) put one ``<failure>`` per failing subtest in their
test's ``<testcase>``, plus one "contains N failed subtests" for the test itself:
each failing subtest counts as a failed test, the summary failure does not.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from kodr_core.results import Failure, Parser
from kodr_core.runners.pytest import e_line
from kodr_core.runners.report import TestReport, failure, js_location, path_of

_SUBTESTS_SUMMARY = re.compile(r"^contains \d+ failed subtests?$")


def parse_junit(xml_text: str) -> TestReport | None:
    """pytest (xunit1/xunit2) or Node junit XML; None if it is not junit we can read.

    A DOCTYPE is refused: the file is written by code kodr runs, and entity
    declarations are the way to make an XML parser blow up.
    """
    if not xml_text or not xml_text.strip() or "<!DOCTYPE" in xml_text or "<!ENTITY" in xml_text:
        return None
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    if root.tag not in ("testsuites", "testsuite"):
        return None
    pytest_style = (
        root.get("name") == "pytest tests"
        or any(s.get("name") == "pytest" for s in root.iter("testsuite"))
        or any(c.get("file") for c in root.iter("testcase"))
    )
    passed = failed = skipped = 0
    failures: list[Failure] = []

    def walk(node: ET.Element, suites: list[str]) -> None:
        nonlocal passed, failed, skipped
        for child in node:
            if child.tag == "testsuite":
                name = child.get("name") or ""
                walk(child, suites if pytest_style or not name else [*suites, name])
            elif child.tag == "testcase":
                bads = [b for b in child if b.tag in ("failure", "error")]
                subtests = [b for b in bads if not _SUBTESTS_SUMMARY.match(b.get("message") or "")]
                if len(bads) > 1 and len(subtests) < len(bads):  # pytest subtests: one per failing subtest
                    for k, bad in enumerate(subtests, start=1):
                        failed += 1
                        f = _junit_failure(child, bad, suites, pytest_style)
                        failures.append(f.model_copy(update={"name": f"{f.name} [subtest {k}]"}))
                elif bads:
                    failed += 1
                    failures.append(_junit_failure(child, bads[0], suites, pytest_style))
                elif child.find("skipped") is not None:
                    skipped += 1
                elif not pytest_style and _is_file_placeholder(child.get("name") or ""):
                    continue  # Node reports a test file that defines no test as one "passing" case
                else:
                    passed += 1

    walk(root, [])
    return TestReport(passed, failed, skipped, passed + failed + skipped, failures, Parser.JUNIT)


_SCRIPT_FILE = re.compile(r"[\\/][^\\/]+\.(?:[cm]?js|[cm]?ts|jsx|tsx)$")


def _is_file_placeholder(name: str) -> bool:
    """A testcase named by a script's path is Node's stand-in for the file, not a test."""
    return bool(_SCRIPT_FILE.search(name))


def _junit_failure(case: ET.Element, bad: ET.Element, suites: list[str], pytest_style: bool) -> Failure:
    name = case.get("name") or "?"
    text = bad.text or ""
    message = bad.get("message") or text.strip().split("\n", 1)[0]
    if pytest_style:
        file = case.get("file")
        cls = case.get("classname") or ""
        module = (file or "").removesuffix(".py").replace("/", ".")
        if module and cls.startswith(module + "."):
            name = cls[len(module) + 1 :].replace(".", "::") + "::" + name
        if message == "collection failure" and e_line(text):
            message = f"collection failure: {e_line(text)}"
        line = None
        if file:
            hits = re.findall(rf"^{re.escape(file)}:(\d+):", text, re.MULTILINE)
            declared = case.get("line") or ""
            line = int(hits[-1]) if hits else (int(declared) + 1 if declared.isdigit() else None)
        return failure(name, file, line, message, text)
    file, line = js_location(text)
    if file is None and (name.startswith(("/", "file://"))):
        file = path_of(name)  # Node reports a file that failed to load under its path
    full = " > ".join([*suites, name])
    return failure(full, file, line, message, text)
