package mutant

// SpicevmcNoCompressed: the firewall's spicevmc rules (usbredir, port,
// webdav) allow SPICEVMC_DATA but not SPICEVMC_COMPRESSED_DATA (102),
// in either direction, so a channel carrying LZ4-compressed data is
// closed (proxy). A rule table written from what a client without LZ4
// sends has this hole: spice-gtk offers LZ4, and then both it and
// spice-server compress large usbredir payloads; the Go client never
// does, so only real-client scenarios see it.
const SpicevmcNoCompressed Mutation = "spicevmc-no-compressed"

// Listed apart from All's literal so mutations added by other changes
// merge without touching the same line.
func init() { All = append(All, SpicevmcNoCompressed) }
