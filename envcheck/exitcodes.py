"""Exit codes, kept apart so a finding is never mistaken for a crash (README: "Exit codes")."""

OK = 0  # no error findings / certified or passed / an install plan exists
FINDINGS = 1  # error findings (warnings too with --strict) / degraded or failed / install blocked
USAGE = 2  # bad command line or bad input file
INTERNAL = 3  # envcheck itself failed (a bug: please report it)
