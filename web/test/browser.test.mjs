// natter's web app in a real browser: Debian's headless Chromium driven
// by playwright-core, against the real natter binary. Two users chat in
// two browser contexts: the message arrives, ticks turn blue when read,
// typing and presence show, a reload keeps the history, going offline and
// back loses nothing and shows nothing twice, and a browser whose
// WebSockets are cut falls back to long-poll.
//
//   cd web/test && npm ci && npm test
//
// NATTER_BIN is the natter binary (default: built from this tree);
// CHROMIUM the browser (default /usr/bin/chromium); screenshots go to
// web/test/screenshots/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const shots = join(here, "screenshots");
const wait = 20_000; // a loaded two-core machine
let server, base, dataDir, browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on("error", reject);
  });
}

before(async () => {
  mkdirSync(shots, { recursive: true });
  let bin = process.env.NATTER_BIN;
  if (!bin) {
    bin = join(mkdtempSync(join(tmpdir(), "natter-web-bin-")), "natter");
    execFileSync("go", ["build", "-o", bin, "./cmd/natter"], { cwd: root, stdio: "inherit" });
  }
  dataDir = mkdtempSync(join(tmpdir(), "natter-web-data-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(bin, ["serve", "--http", `127.0.0.1:${port}`, "--data", dataDir, "--rate-limit", "off"], { stdio: ["ignore", "inherit", "inherit"] });
  const deadline = Date.now() + wait;
  for (;;) {
    try { if ((await fetch(`${base}/readyz`)).ok) break; } catch {}
    if (Date.now() > deadline) throw new Error("natter did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  await new Promise((r) => (server ? server.on("exit", r) : r()));
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

async function signUp(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(wait);
  page.on("pageerror", (err) => console.error(`[${name}] page error:`, err));
  await page.goto(base + "/");
  await page.fill("#auth-username", name);
  await page.fill("#auth-password", "password123");
  await page.click("#sign-up");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForSelector("#link.up, #link.poll");
  return page;
}

const messages = (page) => page.$$eval("#messages li.msg .text", (els) => els.map((e) => e.textContent));
const openChat = async (page, title) => {
  await page.click(`#conversations li:has(.name:text-is("${title}"))`);
  await page.waitForSelector("#chat:not([hidden])");
};

test("two users chat: ticks, typing, presence, reload, offline and back", async () => {
  const ca = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const cb = await browser.newContext({ viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true }); // phone-sized
  const alice = await signUp(ca, "alice");
  // Bob's WebSockets pass through a route the test can cut, as a network
  // loss does (Chromium's offline mode leaves open sockets alone).
  let bobOffline = false;
  const bobSockets = new Set();
  await cb.routeWebSocket(/\/v1\/ws/, (ws) => {
    if (bobOffline) return ws.close({ code: 4999, reason: "offline" });
    const server = ws.connectToServer();
    bobSockets.add({ ws, server });
  });
  const bob = await signUp(cb, "bob");

  // Alice starts a chat by username and writes.
  await alice.fill("#new-chat-username", "bob");
  await alice.press("#new-chat-username", "Enter");
  await alice.waitForSelector("#chat:not([hidden])");
  await alice.fill("#composer-text", "hello bob");
  await alice.press("#composer-text", "Enter");
  await alice.waitForSelector('#messages li.msg.mine .ticks[data-status="sent"], #messages li.msg.mine .ticks[data-status="delivered"]');

  // Bob's list shows it, unread; his client acknowledges delivery at once.
  await bob.waitForSelector('#conversations li:has(.preview:text-is("hello bob")) .unread:text-is("1")');
  await alice.waitForSelector('#messages li.msg.mine .ticks[data-status="delivered"], #messages li.msg.mine .ticks.read');
  await alice.screenshot({ path: join(shots, "1-alice-sent.png") });

  // Bob opens it: read. Alice's ticks turn blue.
  await openChat(bob, "alice");
  assert.deepEqual(await messages(bob), ["hello bob"]);
  await alice.waitForSelector("#messages li.msg.mine .ticks.read");
  assert.equal(await alice.$eval("#messages li.msg.mine .ticks", (e) => getComputedStyle(e).color), "rgb(83, 189, 235)"); // blue

  // Presence: each sees the other online.
  await bob.waitForSelector('#chat-status:text-is("online")');
  await alice.waitForSelector('#chat-status:text-is("online")');

  // Typing shows on the other side.
  await alice.type("#composer-text", "typing", { delay: 50 });
  await bob.waitForSelector('#typing:text-is("alice is typing…")');
  await bob.screenshot({ path: join(shots, "2-bob-phone-typing.png") });
  await alice.fill("#composer-text", "");
  await alice.press("#composer-text", "Enter"); // empty: nothing sent

  // Bob answers; a reload keeps the history.
  await bob.fill("#composer-text", "hi alice");
  await bob.press("#composer-text", "Enter");
  await alice.waitForSelector('#messages li.msg:not(.mine) .text:text-is("hi alice")');
  await bob.reload();
  await bob.waitForSelector("#link.up");
  await openChat(bob, "alice");
  await bob.waitForSelector('#messages li.msg .text:text-is("hi alice")');
  assert.deepEqual(await messages(bob), ["hello bob", "hi alice"]);

  // Bob goes offline; Alice writes twice; back online he has both, once.
  await cb.setOffline(true);
  bobOffline = true;
  for (const { ws, server } of bobSockets) {
    await ws.close({ code: 4999, reason: "network lost" });
    await server.close();
  }
  bobSockets.clear();
  await bob.waitForSelector("#link:not(.up)", { state: "attached" }); // the socket is gone (the sidebar is hidden on a phone)
  await alice.fill("#composer-text", "while you were away 1");
  await alice.press("#composer-text", "Enter");
  await alice.fill("#composer-text", "while you were away 2");
  await alice.press("#composer-text", "Enter");
  await alice.waitForSelector('#messages li.msg.mine:has(.text:text-is("while you were away 2")) .ticks[data-status]');
  await cb.setOffline(false);
  bobOffline = false;
  await bob.waitForSelector('#messages li.msg .text:text-is("while you were away 2")', { timeout: wait });
  await bob.waitForTimeout(500); // anything doubled would show by now
  assert.deepEqual(await messages(bob), ["hello bob", "hi alice", "while you were away 1", "while you were away 2"]);
  await alice.waitForSelector('#messages li.msg.mine:has(.text:text-is("while you were away 2")) .ticks.read');

  // Delete for everyone leaves a tombstone on both sides.
  const last = alice.locator('#messages li.msg.mine:has(.text:text-is("while you were away 1"))');
  await last.hover();
  await last.locator('button[title="Delete for everyone"]').click();
  await bob.waitForSelector('#messages li.msg.deleted .text:text-is("This message was deleted")');
  await alice.screenshot({ path: join(shots, "3-alice-chat.png") });
  await ca.close();
  await cb.close();
});

test("a browser whose WebSockets are cut falls back to long-poll", async () => {
  const cc = await browser.newContext();
  await cc.routeWebSocket(/\/v1\/ws/, (ws) => ws.close({ code: 4999, reason: "no WebSockets here" }));
  const carol = await signUp(cc, "carol");
  await carol.waitForSelector("#link.poll");
  const cd = await browser.newContext();
  const dave = await signUp(cd, "dave");
  await dave.fill("#new-chat-username", "carol");
  await dave.press("#new-chat-username", "Enter");
  await dave.waitForSelector("#chat:not([hidden])");
  await dave.fill("#composer-text", "over long-poll");
  await dave.press("#composer-text", "Enter");
  await carol.waitForSelector('#conversations li:has(.preview:text-is("over long-poll"))');
  await openChat(carol, "dave");
  await carol.fill("#composer-text", "answered over REST");
  await carol.press("#composer-text", "Enter");
  await dave.waitForSelector('#messages li.msg .text:text-is("answered over REST")');
  await dave.waitForSelector('#messages li.msg.mine .ticks.read');
  assert.deepEqual(await messages(carol), ["over long-poll", "answered over REST"]);
  await cc.close();
  await cd.close();
});

test("groups: create with members, chat, roles", async () => {
  const ce = await browser.newContext();
  const cf = await browser.newContext({ viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  const erin = await signUp(ce, "erin");
  const frank = await signUp(cf, "frank");
  await erin.fill("#new-group-name", "weekend");
  await erin.fill("#new-group-members", "frank");
  await erin.press("#new-group-members", "Enter");
  await erin.waitForSelector('#chat-title:text-is("weekend")');
  await erin.fill("#composer-text", "who is in?");
  await erin.press("#composer-text", "Enter");
  await frank.waitForSelector('#conversations li:has(.name:text-is("👥 weekend")) .preview:text-is("who is in?")');
  await openChat(frank, "👥 weekend");
  await frank.fill("#composer-text", "me");
  await frank.press("#composer-text", "Enter");
  await erin.waitForSelector('#messages li.msg:not(.mine) .sender:text-is("frank")');
  // Every member (frank) read it: the aggregate receipt turns erin's ticks blue.
  await erin.waitForSelector('#messages li.msg.mine .ticks.read');
  // Erin, an admin, makes frank an admin too.
  await erin.click("#group-info");
  await erin.click('#group-members li:has-text("frank (member)") button:text-is("make admin")');
  await erin.waitForSelector('#group-members li:has-text("frank (admin)")');
  await erin.screenshot({ path: join(shots, "4-erin-group.png") });
  await ce.close();
  await cf.close();
});
