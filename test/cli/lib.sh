# Helpers shared by the shell tests of test/cli (sourced; POSIX sh). The sourcing script sets
# $tmp, its temporary directory, whose *.out and *.err files fail() prints.

# fail MESSAGE: prints it and the outputs gathered in $tmp, then exits 1.
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/*.out "$tmp"/*.err; do
        [ -s "$f" ] && { echo "--- $(basename "$f")" >&2; cat "$f" >&2; }
    done
    exit 1
}

# check_json FILE EXPR...: each Python expression must be true, with d = the JSON object.
check_json() {
    python3 - "$@" <<'PY' || fail "JSON checks failed"
import json, sys
path, exprs = sys.argv[1], sys.argv[2:]
try:
    d = json.load(open(path))
except Exception as e:
    sys.exit("not one JSON object in %s: %s" % (path, e))
bad = [e for e in exprs if not eval(e, {"d": d})]
for e in bad:
    print("check failed: " + e, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}
