"""Publishing for fleets (invoke release, invoke sums): SHA256SUMS and its signature, index.json
(publish), sysupdate transfers (sysupdate) and the Butane/Ignition config (butane), a minor
line's own feed and a floor (streams), the certificate hosts check signed DDIs against (verity),
images also sent compressed (compressed: --transport), and where all of it lands on a host
(host)."""
