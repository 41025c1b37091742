// Package policyd is dovetail's Postfix SMTPD access policy daemon: greylisting,
// rate limits, sender/login match, recipient validation, SPF, DNSBL, and
// network/country access lists, with state in a shared store (SQLite or Redis).
//
// # Protocol
//
// Reference: Postfix SMTPD_POLICY_README and the client in
// src/smtpd/smtpd_check.c (check_policy_service). Postfix sends "name=value\n"
// lines ended by an empty line over a persistent connection (one per smtpd
// process, every request of an SMTP session on the same connection) and reads
// exactly one "action=<access(5) result>\n\n" per request. Every attribute up to
// Postfix 3.12 is parsed into Request; unknown ones are kept in Request.Extra.
//
// Limits (Config): max_line_length 64 KiB (Postfix's own values stay below
// 2 KiB except xtext-encoded certificate names), max_attributes 100 (Postfix
// 3.12 sends 31), read_timeout 30s once a request has started, idle_timeout 10m
// between requests (Postfix closes idle connections after 300s).
//
// Bad input: a request that was read up to its blank line but is malformed
// (a line without '=', a NUL byte, a non-numeric number, no
// request=smtpd_access_policy) is answered "DEFER_IF_PERMIT 4.5.2 Malformed
// policy request" and the connection stays usable. A line or request over the
// limits, a read timeout, a stray empty line or a connection closed mid-request
// leaves the stream unsynchronised: the daemon logs why and closes without a
// reply, and Postfix retries (then applies its default_action).
//
// # Checks
//
// Checks run in the order of Config.Checks (default: access, recipients,
// sender_login, dnsbl, spf, greylist, ratelimit — cheap and decisive first, the
// stateful ones last so a rejected request neither creates a greylist entry nor
// counts against a limit). The first check answering a final action (REJECT,
// DEFER, DEFER_IF_PERMIT, HOLD, OK, 4xx/5xx...) decides; an allowlist hit in
// access ends the evaluation with its allow_action; PREPEND/WARN/INFO answers
// (the X-Greylist header on a first pass) are returned only when no later check
// decides. Store unavailable: store_failure "closed" (the default) answers
// DEFER_IF_PERMIT, "open" answers as if the check had no opinion; both are
// logged and counted (dovetail_policyd_store_failures_total). Every other
// internal error, timeout or panic answers DEFER_IF_PERMIT 4.3.0, never a
// rejection.
//
// Rate limits count at RCPT: recipients per RCPT request, messages once per
// transaction (the first RCPT of an instance; the connection remembers it), so
// only smtpd_recipient_restrictions needs the policy service and a limit also
// refuses before DATA. Attempts count, refused ones included.
//
// # Postfix setup
//
//	smtpd_recipient_restrictions =
//	    permit_mynetworks, reject_unauth_destination,
//	    check_policy_service { inet:127.0.0.1:10040, timeout=30s }
//
// Postfix's timeout must exceed request_timeout (20s), or Postfix answers its
// default_action before policyd has decided.
// Postfix's default_action for an unreachable policy service (451 4.3.5) matches
// store_failure "closed"; default_action=DUNNO lets mail through unchecked while
// the daemon is down.
//
// On the submission service, place check_policy_service before
// permit_sasl_authenticated, or authenticated mail never reaches the rate limits
// and the sender/login match (greylisting, SPF and DNSBL skip authenticated
// clients by themselves):
//
//	-o smtpd_recipient_restrictions=check_policy_service,inet:127.0.0.1:10040,permit_sasl_authenticated,reject
//
// # Observability
//
// One log line per request ("policy decision") with queue_id, client, helo,
// sender, recipient, sasl_username, the action, the deciding check and why.
// Metrics: dovetail_policyd_requests_total{check,action},
// dovetail_policyd_check_results_total{check,result},
// dovetail_policyd_request_duration_seconds, dovetail_policyd_check_duration_seconds,
// dovetail_policyd_store_failures_total, dovetail_policyd_dns_failures_total,
// dovetail_policyd_protocol_errors_total,
// dovetail_policyd_connections.
package policyd
