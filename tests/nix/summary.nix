# What the flake's outputs come to with the stub nixpkgs: the facts tests/test_flake.py checks.
let
  flake = import ../../flake.nix;
  outputs = flake.outputs { self = outputs; nixpkgs = import ./stub-nixpkgs.nix; };
  image = i: {
    inherit (i) system;
    name = i.args.name;
    config = i.args.config;
    cmd = builtins.head i.args.config.Cmd;
  };
in
{
  inputs = builtins.attrNames flake.inputs;
  packages = builtins.mapAttrs (system: p: {
    attrs = builtins.attrNames p;
    pname = p.default.args.pname;
    version = p.default.args.version;
    dependencies = map (d: d.kind) p.default.args.dependencies;
    preBuild = p.default.args.preBuild;
    image = image p.dockerImage;
  }) outputs.packages;
  dockerImage = builtins.mapAttrs (system: image) outputs.dockerImage;
  devShells = builtins.mapAttrs (system: s: map (p: p.kind) s.default.args.packages) outputs.devShells;
  apps = builtins.mapAttrs (system: a: a.default.program) outputs.apps;
}
