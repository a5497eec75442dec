package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vula-eid/vula/hsm"
	"github.com/vula-eid/vula/internal/app"
	"github.com/vula-eid/vula/internal/config"
	"github.com/vula-eid/vula/internal/idp"
	"github.com/vula-eid/vula/internal/store"
	"github.com/vula-eid/vula/internal/store/memstore"
	"github.com/vula-eid/vula/internal/store/sqlstore"
)

func printClients(w io.Writer, out string, cs []idp.ClientView, asList bool) error {
	if out == "json" {
		if asList {
			return printJSON(w, cs)
		}
		return printJSON(w, cs[0])
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tAUTH\tGRANTS\tSCOPES\tPAR\tREDIRECT URIS")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", c.ID, c.AuthMethod, strings.Join(c.GrantTypes, ","), strings.Join(c.Scopes, " "),
			c.RequirePAR, strings.Join(c.RedirectURIs, " "))
	}
	if len(cs) == 1 && cs[0].Secret != "" {
		fmt.Fprintf(tw, "\nclient_secret (shown once): %s\n", cs[0].Secret)
	}
	return tw.Flush()
}

func clientsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "Manage the identity provider's relying parties"}
	var spec idp.ClientSpec
	var jwksFile string
	create := &cobra.Command{
		Use:   "create CLIENT_ID",
		Short: "Register a relying party (a client_secret_basic client's secret is printed once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			spec.ID = args[0]
			if jwksFile != "" {
				b, err := os.ReadFile(jwksFile)
				if err != nil {
					return fmt.Errorf("--jwks: %w", err)
				}
				spec.JWKS = b
			}
			rec, secret, err := idp.NewClient(spec)
			if err != nil {
				return err
			}
			rec.Created = time.Now().UTC()
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				if err := idp.RegisterClient(ctx, db, rec); err != nil {
					return err
				}
				v := idp.ViewClient(rec)
				v.Secret = secret
				return printClients(cmd.OutOrStdout(), out, []idp.ClientView{v}, false)
			})
		},
	}
	f := create.Flags()
	f.StringVar(&spec.Name, "name", "", "name shown to people on the consent page")
	f.StringSliceVar(&spec.RedirectURIs, "redirect-uri", nil, "redirect URI, matched exactly (repeatable)")
	f.StringSliceVar(&spec.PostLogoutRedirectURIs, "post-logout-redirect-uri", nil, "where logout may return (repeatable)")
	f.StringSliceVar(&spec.GrantTypes, "grant-type", nil, "authorization_code, refresh_token, client_credentials (default the first two)")
	f.StringSliceVar(&spec.Scopes, "scope", nil, "allowed scopes (default openid, profile)")
	f.StringVar(&spec.AuthMethod, "auth-method", idp.AuthSecretBasic, "private_key_jwt, client_secret_basic or none")
	f.StringVar(&jwksFile, "jwks", "", "file with the client's JSON Web Key Set (private_key_jwt)")
	f.StringVar(&spec.JWKSURI, "jwks-uri", "", "URL of the client's JWKS (private_key_jwt)")
	f.BoolVar(&spec.RequirePAR, "require-par", false, "the client must push its authorization requests (RFC 9126)")
	f.StringSliceVar(&spec.AllowedACR, "acr", nil, "levels of assurance the client may ask for (eIDAS LoA URIs)")
	f.StringVar(&spec.SectorIdentifier, "sector", "", "sector identifier: pairwise subjects for this client")
	f.StringVar(&spec.OrganizationID, "organization", "", "the institution a sealing client acts for")
	f.BoolVar(&spec.Introspection, "introspection", false, "may introspect other clients' tokens (a resource server, RFC 7662)")
	f.StringVar(&spec.IDTokenAlg, "id-token-alg", "", "id_token_signed_response_alg: ES256 (default) or RS256")
	f.StringVar(&spec.RequestObjectAlg, "request-object-alg", "", "the only JWS algorithm of its request objects (RFC 9101)")
	f.StringVar(&spec.DPoP, "dpop", "", "required: every access token DPoP-bound (RFC 9449)")
	f.StringVar(&spec.Profile, "profile", "", "fapi2: the FAPI 2.0 Security Profile (private_key_jwt, PAR, DPoP)")
	outputFlag(create, "table")

	list := &cobra.Command{
		Use: "list", Short: "List relying parties", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				cs, err := db.Clients(ctx)
				if err != nil {
					return err
				}
				views := []idp.ClientView{}
				for _, c := range cs {
					views = append(views, idp.ViewClient(c))
				}
				return printClients(cmd.OutOrStdout(), out, views, true)
			})
		},
	}
	outputFlag(list, "table")

	show := &cobra.Command{
		Use: "show CLIENT_ID", Short: "Show one relying party", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				c, err := db.Client(ctx, args[0])
				if err != nil {
					return err
				}
				return printClients(cmd.OutOrStdout(), out, []idp.ClientView{idp.ViewClient(c)}, false)
			})
		},
	}
	outputFlag(show, "table")

	del := &cobra.Command{
		Use: "delete CLIENT_ID", Short: "Remove a relying party", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) (err error) {
				if _, err := db.Client(ctx, args[0]); err != nil {
					return err
				}
				// Its client_credentials tokens are not stored: a running replica refuses them
				// by the marker, at once, as after a delete through the admin API. Written
				// first, so that a store that is down leaves the client in place.
				eph, err := app.OpenEphemeral(ctx, cfg.Store.Ephemeral, newLogger(cmd.ErrOrStderr(), cfg.Log))
				if err != nil {
					return fmt.Errorf("store.ephemeral: %w", err)
				}
				defer func() { err = errors.Join(err, eph.Close()) }()
				if err := idp.VoidClient(ctx, eph, args[0], time.Now(), time.Duration(cfg.IdP.AccessTokenTTL)); err != nil {
					return fmt.Errorf("%w; the client is not deleted", err)
				}
				if err := db.DeleteClient(ctx, args[0]); err != nil {
					return err
				}
				return say(cmd.OutOrStdout(), "deleted client %s\n", args[0])
			})
		},
	}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func printPersons(w io.Writer, out string, ps []idp.PersonView, asList bool) error {
	if out == "json" {
		if asList {
			return printJSON(w, ps)
		}
		return printJSON(w, ps[0])
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PERSONAL NUMBER\tNAME\tE-MAIL\tTOTP\tSUB")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%v\t%s\n", p.PersonalNumber, p.GivenName, p.FamilyName, p.Email, p.TOTP, p.Subject)
	}
	if len(ps) == 1 && ps[0].OTPAuthURI != "" {
		fmt.Fprintf(tw, "\nauthenticator (add it to an app, shown once): %s\n", ps[0].OTPAuthURI)
	}
	return tw.Flush()
}

func personsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "persons", Short: "Manage citizens and officials"}
	withAccounts := func(cmd *cobra.Command, f func(ctx context.Context, db *sqlstore.DB, a *idp.Accounts) error) error {
		cfg, err := g.load()
		if err != nil {
			return err
		}
		return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
			// The commands' own limits need no sharing: an in-memory ephemeral store will do.
			a, err := app.NewAccounts(db, memstore.New(time.Now), cfg)
			if err != nil {
				return err
			}
			return f(ctx, db, a)
		})
	}
	find := func(ctx context.Context, db *sqlstore.DB, id string) (store.Person, error) {
		if p, err := db.PersonByPersonalNumber(ctx, id); err == nil {
			return p, nil
		}
		return db.Person(ctx, id)
	}

	var p store.Person
	var passwordEnv, passwordFile string
	create := &cobra.Command{
		Use:   "create PERSONAL_NUMBER",
		Short: "Register a person (the password comes from --password-env or --password-file, never an argument)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			pw, err := config.Secret(passwordEnv, passwordFile, g.lookupEnv)
			if err != nil {
				return fmt.Errorf("password: %w", err)
			}
			p.PersonalNumber, p.ProofedBy = args[0], "cli"
			for _, r := range p.Roles {
				if r != store.RoleRegistrar {
					return fmt.Errorf("--role %q: the only role is %s", r, store.RoleRegistrar)
				}
			}
			return withAccounts(cmd, func(ctx context.Context, db *sqlstore.DB, a *idp.Accounts) error {
				made, err := a.CreatePerson(ctx, p, pw)
				if err != nil {
					return err
				}
				return printPersons(cmd.OutOrStdout(), out, []idp.PersonView{a.ViewPerson(ctx, made)}, false)
			})
		},
	}
	f := create.Flags()
	f.StringVar(&p.GivenName, "given-name", "", "given name")
	f.StringVar(&p.FamilyName, "family-name", "", "family name")
	f.StringVar(&p.BirthDate, "birthdate", "", "date of birth, YYYY-MM-DD")
	f.StringVar(&p.Email, "email", "", "e-mail address (may be used to log in)")
	f.BoolVar(&p.Official, "official", false, "an official (may hold a signing key)")
	f.StringVar(&p.Proofing, "proofing", store.ProofingSubstantial, "how the identity was verified: low (self-declared), substantial (checked remotely against the registry), high (in person with the ID document); a login reaches at most this level")
	f.StringSliceVar(&p.Roles, "role", nil, "a role: registrar (may register persons at a service centre's desk)")
	f.StringVar(&passwordEnv, "password-env", "", "environment variable holding the password")
	f.StringVar(&passwordFile, "password-file", "", "file holding the password")
	outputFlag(create, "table")

	list := &cobra.Command{
		Use: "list", Short: "List persons", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return withAccounts(cmd, func(ctx context.Context, db *sqlstore.DB, a *idp.Accounts) error {
				ps, err := db.Persons(ctx)
				if err != nil {
					return err
				}
				views := []idp.PersonView{}
				for _, p := range ps {
					views = append(views, a.ViewPerson(ctx, p))
				}
				return printPersons(cmd.OutOrStdout(), out, views, true)
			})
		},
	}
	outputFlag(list, "table")

	show := &cobra.Command{
		Use: "show PERSONAL_NUMBER|SUB", Short: "Show one person", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return withAccounts(cmd, func(ctx context.Context, db *sqlstore.DB, a *idp.Accounts) error {
				p, err := find(ctx, db, args[0])
				if err != nil {
					return err
				}
				return printPersons(cmd.OutOrStdout(), out, []idp.PersonView{a.ViewPerson(ctx, p)}, false)
			})
		},
	}
	outputFlag(show, "table")

	enroll := &cobra.Command{
		Use:   "enroll-totp PERSONAL_NUMBER|SUB",
		Short: "Give a person a new authenticator (replacing any) and print its otpauth URI once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			return withAccounts(cmd, func(ctx context.Context, db *sqlstore.DB, a *idp.Accounts) error {
				p, err := find(ctx, db, args[0])
				if err != nil {
					return err
				}
				key, err := a.NewTOTP(p)
				if err != nil {
					return err
				}
				if err := a.EnrollTOTP(ctx, p.SubjectID, key); err != nil {
					return err
				}
				v := a.ViewPerson(ctx, p)
				v.OTPAuthURI = key.URL()
				return printPersons(cmd.OutOrStdout(), out, []idp.PersonView{v}, false)
			})
		},
	}
	outputFlag(enroll, "table")
	cmd.AddCommand(create, list, show, enroll, issueSigningKeyCmd(g), renewSigningKeyCmd(g), credentialLevelCmd(g), registerCmd(g), resetCmd(g), eidStatusCmd(g))
	return cmd
}

// idpCmd is the identity provider's own upkeep: rotating the token-signing key.
func idpCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "idp", Short: "Upkeep of the identity provider"}
	rotate := &cobra.Command{
		Use: "rotate-key",
		Short: "Make a new token-signing key (idp.algorithm) and retire the old ones; they stay in the JWKS " +
			"until the tokens they signed have expired (running replicas switch within a minute)",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			out := cmd.Flag("output").Value.String()
			if err := checkOutput(out); err != nil {
				return err
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			log := newLogger(cmd.ErrOrStderr(), cfg.Log)
			keys, err := g.openKeys(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, keys.Close()) }()
			return g.withDB(cmd, func(ctx context.Context, db *sqlstore.DB) error {
				p, err := app.NewProvider(ctx, cfg, keys, db, memstore.New(time.Now), log)
				if err != nil {
					return err
				}
				k, err := p.RotateKey(ctx)
				if err != nil {
					return err
				}
				return printKeys(cmd.OutOrStdout(), out, []hsm.KeyInfo{k}, false)
			})
		},
	}
	outputFlag(rotate, "table")
	cmd.AddCommand(rotate)
	return cmd
}
