# Sourced by tools/arm/fetch and tools/arm/kernel: apt-get and apt-cache on a
# private state in a cache directory, so the machine's apt configuration
# stays as it is. The sourcing script defines say and die.
#   private_apt DIR [APT-OPTION...]   selects that state: sets apt_dir, apt_opts
#   private_apt_update [--force]      apt-get update there, unless its lists exist
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
