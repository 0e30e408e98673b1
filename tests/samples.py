"""Sample source the end-to-end tests type into (one copy for the LSP and editor tests)."""

PYTHON = '''import os


def find_python_files(root):
    """Return the paths of all .py files below root, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def count_lines(path):
    with open(path) as f:
        return sum(1 for _ in f)
'''

# PYTHON plus a loop body left open at the cursor (the editor tests complete its last line)
MAIN_HEAD = (
    PYTHON
    + """

def main():
    total = 0
    for path in find_python_files("."):
"""
)

# Next-edit scenario: one local variable with four further uses below; the user renames it at its
# first use (line 1, 0-based) by typing RENAME_TYPED after it. RENAME_EXPECTED: every use renamed.
RENAME_BEFORE = """def summarize(values):
    total = 0
    for v in values:
        total += v
    mean = total / len(values)
    print("sum", total, "mean", mean)
    return total
"""
RENAME_LINE, RENAME_COL, RENAME_TYPED = 1, len("    total"), "_count"
RENAME_EXPECTED = RENAME_BEFORE.replace("total", "total_count")
