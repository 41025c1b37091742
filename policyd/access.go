package policyd

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/oschwald/maxminddb-golang/v2"
)

// accessCheck allows or denies clients by network and by country.
type accessCheck struct {
	allow, deny    netList
	geo            *maxminddb.Reader // nil without a database
	denyCountries  []string
	allowCountries []string
	allowAction    Action
	denyAction     Action
}

// geoRecord is the part of a GeoLite2/GeoIP2 Country or City record we read.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

func newAccessCheck(c AccessConfig) (*accessCheck, error) {
	a := &accessCheck{denyCountries: c.DenyCountries, allowCountries: c.AllowCountries}
	var err error
	if a.allow, err = newNetList(c.AllowNetworks); err != nil {
		return nil, err
	}
	if a.deny, err = newNetList(c.DenyNetworks); err != nil {
		return nil, err
	}
	a.allowAction = mustAction(c.AllowAction)
	a.denyAction = mustAction(c.DenyAction)
	if c.GeoIPDatabase != "" {
		// Read into memory rather than mmap: a reload swaps readers while old
		// requests may still use the previous one, and a byte slice needs no
		// unmapping, so the old reader can simply be dropped.
		b, err := os.ReadFile(c.GeoIPDatabase)
		if err != nil {
			return nil, fmt.Errorf("geoip database: %w", err)
		}
		if a.geo, err = maxminddb.OpenBytes(b); err != nil {
			return nil, fmt.Errorf("geoip database %s: %w", c.GeoIPDatabase, err)
		}
	}
	return a, nil
}

func (a *accessCheck) name() string { return CheckAccess }

func (a *accessCheck) eval(_ context.Context, tx *txn) (verdict, error) {
	ip := tx.req.ClientAddr
	if !ip.IsValid() {
		return pass, nil
	}
	if a.allow.contains(ip) {
		return verdict{action: a.allowAction, reason: "client network allowed", stop: true}, nil
	}
	if a.deny.contains(ip) {
		return verdict{action: expand(a.denyAction, "{client}", ip.String()), reason: "client network denied"}, nil
	}
	if a.geo == nil || (len(a.denyCountries) == 0 && len(a.allowCountries) == 0) {
		return pass, nil
	}
	if ip.Is6() && a.geo.Metadata.IPVersion == 4 {
		// An IPv4-only database knows no IPv6 location: unknown, like an
		// address it has no record for (the library refuses the lookup).
		return pass, nil
	}
	var rec geoRecord
	if err := a.geo.Lookup(ip).Decode(&rec); err != nil {
		// A corrupt record is the database's problem, not the client's.
		return verdict{}, fmt.Errorf("geoip lookup %s: %w", ip, err)
	}
	cc := rec.Country.ISOCode
	if cc == "" {
		cc = rec.RegisteredCountry.ISOCode
	}
	if cc == "" {
		return pass, nil
	}
	if slices.Contains(a.denyCountries, cc) || (len(a.allowCountries) > 0 && !slices.Contains(a.allowCountries, cc)) {
		return verdict{action: expand(a.denyAction, "{client}", ip.String(), "{country}", cc), reason: "country " + cc + " denied"}, nil
	}
	return pass, nil
}
