# A stand-in for nixpkgs, for evaluating flake.nix's outputs where nixpkgs cannot be fetched (no GitHub).
# Every builder returns a record of what it was called with, so the test can check the flake's wiring
# (systems, attributes, image settings) without building anything. It does not check nixpkgs' own API.
let
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
    optionalString = cond: s: if cond then s else "";
    optional = cond: x: if cond then [ x ] else [ ];
  };
  drv = kind: system: args: { inherit kind system args; outPath = "/nix/store/stub-${kind}-${system}"; };
  pkgsFor = system: {
    inherit lib;
    stdenv = { isDarwin = system == "aarch64-darwin"; isLinux = system != "aarch64-darwin"; };
    python311 = drv "python" system { };
    python311Packages = builtins.listToAttrs (map (name: { inherit name; value = drv name system { }; }) [
      "hatchling" "quart" "hypercorn" "pluggy" "pydantic-settings" "aiofiles" "python-multipart"
      "itsdangerous" "prometheus-client" "limits" "python-magic"
    ]) // { buildPythonApplication = drv "python-application" system; };
    dockerTools.buildLayeredImage = drv "image" system;
    fetchurl = drv "fetchurl" system;
    mkShell = drv "shell" system;
    cacert = drv "cacert" system { };
    uv = drv "uv" system { };
    nodejs_22 = drv "nodejs" system { };
    openssl = drv "openssl" system { };
    hadolint = drv "hadolint" system { };
    chromium = drv "chromium" system { };
  };
in
{
  inherit lib;
  legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] pkgsFor;
}
