#!/usr/bin/env bash
# Regenerates vectors.txt with Dovecot's own `doveadm pw` (Debian dovecot-core) and,
# for yescrypt ($y$, which doveadm cannot generate), libxcrypt's crypt(3) — the
# same function Dovecot's {CRYPT} verifier calls. The output is golden data: tests
# read it and never regenerate it. Run by hand only: ./gen-vectors.sh > vectors.txt
set -euo pipefail
passwords=("secret" "pässwörd" "Tr0ub4dor&3 with spaces:colons")
schemes=(PLAIN CLEAR CLEARTEXT PLAIN.B64 PLAIN.HEX SHA SHA1 SHA.HEX SHA256 SHA256.HEX SHA512 SSHA SSHA.B64 SSHA.HEX
  SSHA256 SSHA512 CRYPT MD5-CRYPT SHA256-CRYPT SHA512-CRYPT BLF-CRYPT ARGON2I ARGON2ID PBKDF2
  CRAM-MD5 HMAC-MD5 SCRAM-SHA-1 SCRAM-SHA-256)
echo "# password<TAB>stored form; generated $(date -u +%F) by $(doveadm -c /dev/null --version 2>/dev/null || dovecot --version) doveadm pw"
for p in "${passwords[@]}"; do
  for s in "${schemes[@]}"; do
    printf '%s\t%s\n' "$p" "$(doveadm pw -s "$s" -p "$p")"
  done
  # rounds= variants
  printf '%s\t%s\n' "$p" "$(doveadm pw -s SHA512-CRYPT -r 10000 -p "$p")"
  printf '%s\t%s\n' "$p" "$(doveadm pw -s SHA256-CRYPT -r 8000 -p "$p")"
  printf '%s\t%s\n' "$p" "$(doveadm pw -s PBKDF2 -r 3000 -p "$p")"
  # {CRYPT} with every crypt(3) family, from libxcrypt (what Dovecot's CRYPT scheme calls)
  P="$p" python3 -W ignore - <<'PY'
import crypt, ctypes, os
l = ctypes.CDLL("libcrypt.so.1"); l.crypt_gensalt.restype = ctypes.c_char_p
p = os.environ["P"]
for prefix in (b"$1$", b"$5$", b"$6$", b"$2y$", b"$y$"):
    salt = l.crypt_gensalt(prefix, 5 if prefix == b"$2y$" else 0, None, 0).decode()
    print(f"{p}\t{{CRYPT}}{crypt.crypt(p, salt)}")
salt = l.crypt_gensalt(b"$y$", 0, None, 0).decode()
print(f"{p}\t{crypt.crypt(p, salt)}")   # bare crypt string: Dovecot's default_pass_scheme = CRYPT
PY
done
