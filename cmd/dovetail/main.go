// Command dovetail runs the mail-server logic that sits beside Postfix and Dovecot.
package main

import (
	"os"

	"github.com/dovetail-mail/dovetail/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
