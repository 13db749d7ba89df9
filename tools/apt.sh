# Sourced by tools/arm/fetch, tools/arm/kernel and tools/x86-kernel: apt-get
# and apt-cache on a private state in a cache directory, so the machine's apt
# configuration stays as it is. The sourcing script defines say and die.
#   private_apt DIR [APT-OPTION...]   selects that state: sets apt_dir, apt_opts
#   private_apt_update [--force]      apt-get update there, unless its lists exist
#   debian_suite DIR SUITE            both, for SUITE's main and security archives
private_apt() {
    apt_dir=$1
    shift
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    apt_opts=(-q -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir"
        -o Dir::State::status=/dev/null -o APT::Sandbox::User=root "$@")
}

private_apt_update() {
    local log=$apt_dir/update.log
    if [ "${1:-}" = --force ] || ! ls "$apt_dir/lists/"*Packages* >/dev/null 2>&1; then
        say "apt-get update (private lists in $apt_dir)"
        # A failed fetch is only a warning to apt-get update (exit status 0).
        if ! apt-get "${apt_opts[@]}" update >"$log" 2>&1 || grep -qE '^(E:|W: Failed)' "$log"; then
            die "apt-get update failed: $(grep -m1 -E '^(E:|W: Failed)' "$log" || tail -1 "$log")"
        fi
    fi
}

debian_suite() {
    private_apt "$1" -o Dir::Etc::sourcelist="$1/sources.list" -o Dir::Etc::sourceparts=-
    cat > "$apt_dir/sources.list" <<LIST
deb http://deb.debian.org/debian $2 main
deb http://deb.debian.org/debian-security $2-security main
LIST
    private_apt_update
}
