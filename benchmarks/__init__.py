"""fastbp's airspeed velocity (asv) suite; see ``asv.conf.json`` and docs/performance.md."""
