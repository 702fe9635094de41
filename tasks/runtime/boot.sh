# shellcheck shell=bash
# enable_boot: the units that run the site start at boot (and with them the app).
#
# Defines: enable_at_boot

enable_at_boot() {  # UNIT...
    local unit
    for unit in "$@"; do
        systemctl is-enabled -q "$unit" || { quiet systemctl enable -q "$unit"; changed; }
        systemctl is-enabled -q "$unit" || die "$unit is still not enabled at boot"
    done
}
