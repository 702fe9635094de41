# shellcheck shell=bash
# HTTPS: the user's certificate files in place (https.mode files); a certificate from an ACME CA with
# certbot's webroot authenticator, renewed by certbot's timer, nginx reloaded by the lineage's hook.
#
# Reads:   APP, TLS_CERT, TLS_KEY, ACME_WEBROOT, ACME_CA_BUNDLE, CERTBOT_DROPIN, CERTBOT_RENEWAL, NGINX_UNIT,
#          W (apply.sh); ACME_EMAIL, ACME_DIRECTORY
# Defines: install_tls_files, trust_acme_ca, forget_acme_ca, certbot_reason, kit_lineage, obtain_certificate

install_tls_files() {  # CERT_FILE KEY_FILE (in $W): the certificate 0644, its key 0600, both root's
    install -d -o root -g root -m 755 "${TLS_CERT%/*}" || die "could not make ${TLS_CERT%/*}"
    install_file "$W/$1" "$TLS_CERT" 644
    install_file "$W/$2" "$TLS_KEY" 600
}

trust_acme_ca() {  # BUNDLE_FILE (in $W): certbot reaches the ACME directory trusting this CA, its
    # renewals too (a drop-in gives certbot's service the variable that requests reads)
    local dropin
    install -d -o root -g root -m 755 "${ACME_CA_BUNDLE%/*}" "${CERTBOT_DROPIN%/*}" || die "could not make the directories of the CA bundle"
    install_file "$W/$1" "$ACME_CA_BUNDLE" 644
    dropin="[Service]"$'\n'"Environment=REQUESTS_CA_BUNDLE=$ACME_CA_BUNDLE"
    if [ "$(cat "$CERTBOT_DROPIN" 2>/dev/null)" != "$dropin" ]; then
        printf '%s\n' "$dropin" >"$W/certbot.dropin"
        install_file "$W/certbot.dropin" "$CERTBOT_DROPIN" 644
        quiet systemctl daemon-reload
    fi
}

forget_acme_ca() {  # https.ca_bundle unset: certbot trusts the system's CAs again
    [ -e "$CERTBOT_DROPIN" ] || [ -e "$ACME_CA_BUNDLE" ] || return 0
    rm -f "$CERTBOT_DROPIN" "$ACME_CA_BUNDLE"
    quiet systemctl daemon-reload
    changed
}

certbot_reason() {  # CERTBOT_OUTPUT: its reason in one line: the CA's "Detail:" of each failed domain,
    # else the line after "An unexpected error occurred:", else its last line naming an error
    local details
    details=$(printf '%s\n' "$1" | awk '
        /^[[:space:]]*Domain:/ { sub(/^[[:space:]]*Domain:[[:space:]]*/, ""); domain = $0 }
        /^[[:space:]]*Detail:/ { sub(/^[[:space:]]*Detail:[[:space:]]*/, ""); printf "%s%s: %s", sep, domain, $0; sep = "; " }')
    if [ -n "$details" ]; then
        printf '%s\n' "$details"
    elif printf '%s\n' "$1" | grep -q "An unexpected error occurred:"; then
        printf '%s\n' "$1" | grep -A 1 "An unexpected error occurred:" | tail -n 1
    else
        error_line "$1"
    fi
}

kit_lineage() {  # HOOK: whether the app's certbot lineage is the kit's: its renewal config names the kit's
    # webroot and deploy hook (certbot writes a list of one value with a comma after it)
    local line webroot="" hook=""
    while IFS= read -r line; do
        case $line in
            "webroot_path = $ACME_WEBROOT" | "webroot_path = $ACME_WEBROOT,") webroot=1 ;;
            "renew_hook = $1") hook=1 ;;
        esac
    done <"$CERTBOT_RENEWAL"
    [ -n "$webroot" ] && [ -n "$hook" ]
}

# A lineage of the app's name that someone else asked certbot for becomes the kit's: certbot renews it
# with the kit's settings, rewriting its renewal config, of which a copy is kept (as NAME.conf.bak: certbot
# loads renewal/*.conf only); its certificates stay in its archive.
obtain_certificate() {  # DOMAIN...: the app's lineage, for these domains, from ACME_DIRECTORY over HTTP-01
    local out domain args=() trust=() hook="nginx -t -q && systemctl reload $NGINX_UNIT"
    for domain in "$@"; do args+=(-d "$domain"); done
    [ -e "$ACME_CA_BUNDLE" ] && trust=("REQUESTS_CA_BUNDLE=$ACME_CA_BUNDLE")
    if [ -f "$CERTBOT_RENEWAL" ] && ! kit_lineage "$hook"; then keep_copy "$CERTBOT_RENEWAL" "${CERTBOT_RENEWAL%/*}"; fi
    out=$(env "${trust[@]}" certbot certonly --non-interactive --agree-tos --no-eff-email --email "$ACME_EMAIL" \
        --server "$ACME_DIRECTORY" --cert-name "$APP" --webroot --webroot-path "$ACME_WEBROOT" \
        --force-renewal --deploy-hook "$hook" "${args[@]}" 2>&1) \
        || die "certbot could not obtain a certificate for $* from $ACME_DIRECTORY: $(certbot_reason "$out"); the site serves as before"
    changed
}
