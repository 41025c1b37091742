package bayes

// HashToken exposes the field name of a token for tests that read raw counts.
var HashToken = hashToken
