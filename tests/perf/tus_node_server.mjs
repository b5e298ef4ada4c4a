// The Node.js tus server (@tus/server with @tus/file-store, devDependencies in package.json) as
// tests/perf/bench_peers.py compares the service with: uploads under /files/ stored in DIRECTORY.
//   node tests/perf/tus_node_server.mjs PORT DIRECTORY
// Listens on 127.0.0.1 only and prints "listening" once it accepts connections.
import { FileStore } from "@tus/file-store";
import { Server } from "@tus/server";

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error("usage: node tus_node_server.mjs PORT DIRECTORY");
  process.exit(2);
}
const server = new Server({ path: "/files", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port: Number(port) }, () => console.log("listening"));
process.on("SIGTERM", () => process.exit(0));
