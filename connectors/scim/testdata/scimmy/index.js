// SCIMMY (scimmy + scimmy-routers, npm) as a SCIM 2.0 service provider for the scim
// connector's interop test (connectors/scim/interop_test.go). SCIMMY routes, parses
// filters and PatchOps and renders ListResponses and errors; this file supplies only the
// in-memory storage it calls back into (its ingress/egress/degress handlers) and a bearer
// token check, as its README has a host do.
//
// Environment: SCIMMY_TOKEN (required, the bearer token), SCIMMY_MAX_RESULTS (optional,
// announced as filter.maxResults). It listens on a free loopback port and prints
// {"port":N} on stdout once it accepts connections; it exits when stdin closes, so a test
// process that dies without killing it does not leave it running.
//
// Express is pinned to 4.x: scimmy-routers casts startIndex/count by assigning into
// req.query, which Express 5 re-parses on every read, so under 5 paging parameters reach
// SCIMMY as strings and are ignored.
import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";

const token = process.env.SCIMMY_TOKEN;
if (!token) {
    console.error("SCIMMY_TOKEN is required");
    process.exit(2);
}

// store keeps one resource type's resources in creation order, so listings page stably.
function store(prefix, unique) {
    const items = new Map();
    let seq = 0;
    const notFound = (id) => new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);
    const taken = (value, except) => [...items.values()].some(
        (r) => r.id !== except && String(r[unique]).toLowerCase() === String(value).toLowerCase());
    return {
        // ingress creates (no resource.id) or replaces (PUT, and the write after a PATCH).
        ingress(resource, instance) {
            if (resource.id && !items.has(resource.id)) throw notFound(resource.id);
            if (taken(instance[unique], resource.id))
                throw new SCIMMY.Types.Error(409, "uniqueness", `${unique} is already taken`);
            const id = resource.id ?? `${prefix}-${++seq}`;
            const now = new Date().toISOString();
            const record = {...JSON.parse(JSON.stringify(instance)), id,
                meta: {created: items.get(id)?.meta.created ?? now, lastModified: now}};
            items.set(id, record);
            return record;
        },
        // egress answers one resource by id, or every resource the filter matches: SCIMMY
        // sorts and pages what it is given.
        egress(resource) {
            if (resource.id) {
                if (!items.has(resource.id)) throw notFound(resource.id);
                return items.get(resource.id);
            }
            const all = [...items.values()];
            return resource.filter ? resource.filter.match(all) : all;
        },
        degress(resource) {
            if (!items.delete(resource.id)) throw notFound(resource.id);
        },
    };
}

function declare(Resource, s) {
    SCIMMY.Resources.declare(Resource)
        .ingress((resource, instance) => s.ingress(resource, instance))
        .egress((resource) => s.egress(resource))
        .degress((resource) => s.degress(resource));
}

declare(SCIMMY.Resources.User, store("u", "userName"));
declare(SCIMMY.Resources.Group, store("g", "displayName"));

const app = express();
app.use("/scim/v2", new SCIMMYRouters({
    type: "bearer",
    docUri: "https://example.com/scim/auth",
    handler: (request) => {
        if (request.header("Authorization") !== `Bearer ${token}`) throw new Error("Bearer token required");
        return "groupsync-test";
    },
}));
// SCIMMYRouters sets its own ServiceProviderConfig when constructed: override after it.
const maxResults = Number(process.env.SCIMMY_MAX_RESULTS);
if (maxResults > 0) SCIMMY.Config.set("filter", maxResults);

const server = app.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({port: server.address().port}) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
