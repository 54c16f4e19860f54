// Command migrate is capsec's CLI: it drives the local agent. See `migrate --help`.
package main

import (
	"os"

	"github.com/capsec/capsec/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
