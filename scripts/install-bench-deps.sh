#!/usr/bin/env bash
# install-bench-deps.sh — packages `make bench` needs on top of the test packages: the
# peers dovetail is measured against (../shared/peers): SpamAssassin (spamd/spamc),
# rspamd, postgrey. Same rules as install-deps.sh (idempotent, non-interactive, no
# system service left running).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-deps.sh" spamassassin spamd spamc rspamd postgrey
