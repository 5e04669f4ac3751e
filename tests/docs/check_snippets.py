"""Every ```cpp block of README.md must appear, line for line, in a file
that the test build compiles (tests/docs/readme_snippets.cpp), past its
#include / namespace-alias lines. Usage: check_snippets.py README.md FILE..."""
import re
import sys


def code_lines(block):
    return [l for l in block.strip("\n").split("\n")
            if not l.startswith("#include") and not l.startswith("namespace ") and l.strip()]


def main():
    doc, sources = sys.argv[1], sys.argv[2:]
    compiled = "\n".join(l for s in sources for l in open(s).read().split("\n") if l.strip())
    missing = 0
    blocks = re.findall(r"```cpp\n(.*?)```", open(doc).read(), re.S)
    if not blocks:  # a renamed fence would otherwise check nothing and pass
        print(f"{doc}: no ```cpp block found: FAIL")
        return 1
    for i, block in enumerate(blocks):
        want = "\n".join(code_lines(block))
        if want not in compiled:
            print(f"{doc}: C++ block {i + 1} is not in {', '.join(sources)}:\n{want}\n")
            missing += 1
    print(f"{doc}: {missing} C++ blocks not compiled by a test: FAIL" if missing else f"{doc}: every C++ block is compiled by a test: PASS")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
