package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

func newConfigCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check or print the configuration"}
	check := noConfig(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Check a config file; print every problem as file:line: message and exit 1 on any",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := app.ConfigPath
			if len(args) == 1 {
				path = args[0]
			}
			if _, err := LoadConfig(path); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return &ExitError{Code: 1}
			}
			name := path
			if name == "" {
				name = "(embedded default)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", name)
			return nil
		},
	})
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (defaults filled in)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := yaml.Marshal(app.Config())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.AddCommand(check, show)
	return cmd
}
