// Package policyd is dovetail's Postfix SMTPD access policy daemon.
//
// Protocol reference: Postfix SMTPD_POLICY_README (policy delegation) and the
// client side in src/smtpd/smtpd_check.c (check_policy_service). Postfix sends
// "name=value\n" lines ended by an empty line over a persistent connection and
// expects exactly one "action=<access(5) result>\n\n" reply per request.
//
// A request runs through the configured checks in the declared order
// (networks/countries, recipient validation, sender/login match, DNSBL, SPF,
// greylisting, rate limits). The first check that answers a final action decides;
// PREPEND/WARN/INFO answers are remembered and returned only when no later check
// decides. Store failures follow the configured fail mode; every other internal
// error answers a temporary action, never a rejection.
package policyd
