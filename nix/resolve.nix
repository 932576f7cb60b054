# resolve.nix: turns package names into derivations, in one evaluation.
#
# The Go driver (resolve.go) runs
#
#   nix-instantiate resolve.nix --add-root DIR/resolution \
#     --argstr names '["hello","xorg.xev"]' \
#     --argstr source '{"kind":"git","git":{"url":"…","ref":"main"}}' \
#     --argstr system x86_64-linux
#
# Everything a request contains arrives here as JSON data in those strings;
# nothing from a request is ever part of Nix code.
#
# source.kind is one of
#   path     import source.path (the builtin set and NIXERY_PKGS_PATH)
#   git      import (builtins.fetchGit source.git): url plus ref, or rev
#            with allRefs (NIXERY_PKGS_REPO; also a tag other than latest of
#            a NIXERY_PKGS_PATH that is a git checkout, as a file:// url
#            and the rev the driver found with git)
#   channel  import (builtins.fetchTarball source.url)
#
# The package set is called with whichever of { system, config = { };
# overlays = [ ]; } its function declares (nixpkgs declares all three; the
# empty config and overlays keep ~/.config/nixpkgs out of the result).
#
# The package set states the oldest Nix that can evaluate it in
# lib/minver.nix, as nixpkgs does; nixpkgs' default.nix aborts on an older
# Nix with a long message. It is checked here first, the way nixpkgs checks
# it (builtins.compareVersions), so that a package set too new for this Nix
# is answered as such, without importing it:
#   { rev; nixTooOld = true; required = "2.18"; nixVersion = "2.8.0"; }
# Otherwise the result is
#   { rev; lastModified; evaluated = true; packages = [ … ]; }
# where evaluated forces the package set itself (with no names, this is the
# readiness check's evaluation). rev is the commit evaluated where it is
# known (fetchGit's rev, or a channel's .git-revision), else null.
#
# For every name, in order, packages holds
#   { name; status = "ok"; attr; drvPath; outputs = [ { name; path; } ];
#     pname; version; meta = { description; homepage; licenses; }; }
#   { name; status = "missing"; }          no such attribute
#   { name; status = "notPackage"; attr; } an attribute that is no derivation
# A dot separates nested attributes. A top-level attribute that does not
# exist is looked up again ignoring case: of several matches the
# lexicographically smallest wins (attrNames is sorted and listToAttrs keeps
# the first of duplicate names). Nested keys are exact.
# Outputs are meta.outputsToInstall if set, else the default output; a name
# that selects an output (multi.dev) gives just that output.
#
# pname, version and meta are what the package says of itself, for the
# image's SBOM: data only, every string cut to a bound, null where absent
# or not a string; licenses is a list (at most maxLicenses) of
# { spdxId; name; } (meta.license may be one license, a list, or an old
# plain string). A meta attribute that throws (tryEval) is null; nothing of
# meta can fail a resolution.
#
# lastModified is the commit time of a git source (fetchGit's), else null.
#
# An empty system means the host's (builtins.currentSystem).
#
# The answer is JSON in a file of the store, which refers to every
# derivation it names (their .drv files, not their outputs, which may not
# exist yet). The file is returned as what nix-instantiate takes for a
# derivation: nix-instantiate writes it and the derivations, and roots it
# with --add-root, before it exits. The derivations a plan needs are so
# rooted from the moment they exist; the driver reads the file through the
# root and releases the root with the plan.
{ names, source, system }:

let
  src = builtins.fromJSON source;
  requested = builtins.fromJSON names;

  fetched =
    if src.kind == "path" then { outPath = src.path; }
    else if src.kind == "git" then builtins.fetchGit src.git
    else if src.kind == "channel" then { outPath = builtins.fetchTarball src.url; }
    else throw "nixport: unknown package source kind ${src.kind}";
  root = fetched.outPath;

  revisionFile = root + "/.git-revision";
  rev =
    if fetched ? rev then fetched.rev
    else if src.kind == "channel" && builtins.pathExists revisionFile
    then builtins.head (builtins.match "[[:space:]]*([^[:space:]]*)[[:space:]]*" (builtins.readFile revisionFile))
    else null;

  lastModified = fetched.lastModified or null;

  minverFile = root + "/lib/minver.nix";
  required = if builtins.pathExists minverFile then import minverFile else null;
  nixTooOld = builtins.isString required
    && builtins.compareVersions required builtins.nixVersion == 1;

  imported = import root;
  pkgs =
    if builtins.isFunction imported
    then imported (builtins.intersectAttrs (builtins.functionArgs imported) {
      system = if system == "" then builtins.currentSystem else system;
      config = { };
      overlays = [ ];
    })
    else imported;

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = builtins.replaceStrings upper lower;

  # Lower-cased top-level name -> the smallest name with that spelling.
  # Lazy: only computed when some name needs the fallback.
  byLowerName = builtins.listToAttrs
    (map (n: { name = toLower n; value = n; }) (builtins.attrNames pkgs));

  isDerivation = v: builtins.isAttrs v && (v.type or null) == "derivation";

  # What the SBOM takes from a package: bounded strings, never code.
  maxText = 1000;
  maxLicenses = 16;
  # ok: x evaluates (deeply) without a throw.
  ok = x: (builtins.tryEval (builtins.deepSeq x true)).success;
  text = x: if ok x && builtins.isString x
    then builtins.unsafeDiscardStringContext (builtins.substring 0 maxText x) else null;
  attrOf = v: k: if ok v && builtins.isAttrs v && ok (v.${k} or null) then v.${k} or null else null;
  firstString = x: if ok x && builtins.isList x && x != [ ] then text (builtins.head x) else text x;
  license = l:
    if ok l && builtins.isString l then { spdxId = null; name = text l; }
    else if ok l && builtins.isAttrs l then {
      spdxId = text (attrOf l "spdxId");
      name = text (let s = attrOf l "shortName"; in if builtins.isString s then s else attrOf l "fullName");
    }
    else null;
  licenses = x:
    let ls = if !(ok x) || x == null then [ ] else if builtins.isList x then x else [ x ]; in
    builtins.filter (l: l != null)
      (builtins.genList (i: license (builtins.elemAt ls i))
        (if builtins.length ls < maxLicenses then builtins.length ls else maxLicenses));
  metaOf = v:
    let m = attrOf v "meta"; in {
      description = text (attrOf m "description");
      homepage = firstString (attrOf m "homepage");
      licenses = licenses (attrOf m "license");
    };

  # walk follows keys from v: { found; value; parent; }
  walk = v: parent: keys:
    if keys == [ ] then { found = true; value = v; inherit parent; }
    else
      let k = builtins.head keys; in
      if builtins.isAttrs v && builtins.hasAttr k v
      then walk v.${k} v (builtins.tail keys)
      else { found = false; };

  resolve = name:
    let
      parts = builtins.filter builtins.isString (builtins.split "\\." name);
      first = builtins.head parts;
      rest = builtins.tail parts;
      top =
        if builtins.hasAttr first pkgs then first
        else byLowerName.${toLower first} or null;
      found = if top == null then { found = false; } else walk pkgs.${top} pkgs rest;
      v = found.value;
      attr = builtins.concatStringsSep "." ([ top ] ++ rest);
      last = if rest == [ ] then null else builtins.elemAt rest (builtins.length rest - 1);
      # multi.dev: the key names one of the parent derivation's outputs.
      selectsOutput = last != null && isDerivation found.parent
        && builtins.elem last (found.parent.outputs or [ ])
        && (v.outputName or null) == last;
      outputNames =
        if selectsOutput then [ last ]
        else v.meta.outputsToInstall or [ (v.outputName or "out") ];
    in
    if !found.found then { inherit name; status = "missing"; }
    else if !isDerivation v then { inherit name attr; status = "notPackage"; }
    else {
      inherit name attr;
      status = "ok";
      # A reference to the .drv file alone, not to its outputs.
      drvPath = builtins.unsafeDiscardOutputDependency v.drvPath;
      # Text: outputs not built yet cannot be referred to.
      outputs = map (o: { name = o; path = builtins.unsafeDiscardStringContext v.${o}.outPath; }) outputNames;
      pname = text (attrOf v "pname");
      version = text (attrOf v "version");
      meta = metaOf v;
    };

  result =
    if nixTooOld
    then { inherit rev required nixTooOld; inherit (builtins) nixVersion; }
    else {
      inherit rev lastModified;
      evaluated = builtins.isAttrs pkgs;
      packages = map resolve requested;
    };

  answer = builtins.toFile "nixport-resolution.json" (builtins.toJSON result);
in
{
  type = "derivation";
  name = "nixport-resolution";
  outputName = "out";
  drvPath = answer;
  outPath = answer;
}
