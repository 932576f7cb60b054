// nixport's build pages, live: /builds, a build's page (/builds/<id>) and
// the recent builds on the front page follow /api/builds without a reload.
// No framework and nothing from elsewhere; the pages are rendered on the
// server and work without this script. The words (progress, times) are
// written as web/buildpages.go writes them: change both together.
"use strict";
(() => {
	const root = document.querySelector("[data-live]");
	if (!root || !window.fetch) {
		return;
	}
	const kind = root.dataset.live;

	// The server's clock minus ours, from the Date of its answers, so that
	// "12 s so far" does not depend on this machine's clock.
	let skew = 0;
	const now = () => Date.now() + skew;

	async function getJSON(url) {
		const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
		const date = Date.parse(r.headers.get("Date"));
		if (!Number.isNaN(date)) {
			skew = date + 500 - Date.now(); // Date is to the second: take its middle
		}
		if (!r.ok) {
			const err = new Error("HTTP " + r.status);
			err.status = r.status;
			throw err;
		}
		return r.json();
	}

	// poll calls render with url's JSON every `every` ms while the page is
	// visible, backing off while the registry does not answer; it stops
	// when render returns false or gone (for a 404) does.
	function poll(url, every, render, gone) {
		const status = root.querySelector("[data-live-status]");
		let timer = 0;
		let failures = 0;
		let stopped = false;
		const schedule = (ms) => {
			clearTimeout(timer);
			timer = setTimeout(tick, ms);
		};
		const stop = () => {
			stopped = true;
			clearTimeout(timer);
		};
		const say = (text) => {
			if (status) {
				status.textContent = text;
				status.hidden = !text;
			}
		};
		async function tick() {
			if (stopped || document.hidden) {
				return; // visibilitychange starts again
			}
			try {
				const data = await getJSON(url);
				failures = 0;
				say("");
				if (render(data) === false) {
					stop();
					return;
				}
				schedule(every);
			} catch (err) {
				if (err.status === 404 && gone) {
					stop();
					gone();
					return;
				}
				failures++;
				say("Not up to date: the registry does not answer. Trying again…");
				schedule(Math.min(every * 2 ** failures, 30000));
			}
		}
		document.addEventListener("visibilitychange", () => {
			if (!document.hidden && !stopped) {
				schedule(0);
			}
		});
		tick();
	}

	// The words of a build, as buildpages.go has them.
	function duration(ms) {
		const sec = Math.floor(Math.max(ms, 0) / 1000);
		if (sec < 60) {
			return sec + " s";
		}
		if (sec < 3600) {
			return Math.floor(sec / 60) + " min " + (sec % 60) + " s";
		}
		return Math.floor(sec / 3600) + " h " + Math.floor((sec % 3600) / 60) + " min";
	}
	function bytes(n) {
		if (n < 1024) {
			return n + " B";
		}
		const units = ["KiB", "MiB", "GiB", "TiB"];
		let v = n / 1024;
		let i = 0;
		while (v >= 1024 && i < 3) {
			v /= 1024;
			i++;
		}
		return v.toFixed(1) + " " + units[i];
	}
	function progress(b) {
		const parts = [];
		if (b.paths_total) {
			parts.push("paths " + (b.paths_done || 0) + "/" + b.paths_total);
		}
		if (b.layers_total) {
			parts.push("layers " + (b.layers_done || 0) + "/" + b.layers_total);
		}
		if (b.bytes_compressed) {
			parts.push(bytes(b.bytes_compressed));
		}
		return parts.length ? parts.join(" · ") : "—";
	}
	function timeText(b) {
		const t = (s) => Date.parse(s);
		if (b.finished_at) {
			const from = b.started_at || b.queued_at;
			return "took " + duration(t(b.finished_at) - t(from)) + ", " + duration(now() - t(b.finished_at)) + " ago";
		}
		if (b.started_at) {
			return duration(now() - t(b.started_at)) + " so far";
		}
		if (b.queued_at) {
			return "waiting " + duration(now() - t(b.queued_at));
		}
		return "";
	}
	function clock(s) {
		if (!s) {
			return "—";
		}
		const iso = new Date(s).toISOString();
		return iso.slice(0, 10) + " " + iso.slice(11, 19) + " UTC";
	}
	function firstLine(s, max) {
		if (!s) {
			return "";
		}
		let line = s.split("\n", 1)[0];
		let cut = line.length < s.length;
		if (line.length > max) {
			line = line.slice(0, max);
			cut = true;
		}
		return cut ? line + "…" : line;
	}

	function el(tag, attrs, ...kids) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			e.setAttribute(k, v);
		}
		e.append(...kids);
		return e;
	}
	const stateBadge = (b) => el("span", { class: "state state-" + b.state }, b.state);

	// A row of a table of builds: the image cell (a link, which keeps the
	// focus) is made once; the others are written again on every update.
	const columns = {
		builds: [
			["state", (b) => [stateBadge(b)], "nowrap"],
			["progress", (b) => {
				const err = firstLine(b.error, 160);
				if (!err) {
					return [progress(b)];
				}
				const p = progress(b);
				const line = el("span", { class: "error-line" }, err);
				return p === "—" ? [line] : [p, line]; // the error says it all
			}],
			["time", (b) => [timeText(b)]],
		],
		errors: [
			["error", (b) => [firstLine(b.error, 160)]],
			["time", (b) => [timeText(b)]],
		],
	};
	// imageName is name:tag, breaking only after a slash.
	function imageName(b) {
		const code = el("code", {});
		b.image.split("/").forEach((c, i) => {
			if (i > 0) {
				code.append("/", el("wbr", {}));
			}
			code.append(c);
		});
		code.append(":" + b.tag);
		return code;
	}
	function makeRow(b, cols) {
		const tr = el("tr", { "data-id": b.id },
			el("td", { class: "image" }, el("a", { href: "/builds/" + b.id }, imageName(b))));
		for (const [label, , cls] of cols) {
			tr.append(el("td", cls ? { class: cls, "data-label": label } : { "data-label": label }));
		}
		return tr;
	}
	function updateRow(tr, b, cols) {
		cols.forEach(([, fill], i) => {
			const td = tr.cells[i + 1];
			const kids = fill(b);
			// Written again only when it changed: a reader may be selecting it.
			const sig = kids.map((k) => (typeof k === "string" ? k : k.className + ":" + k.textContent)).join("|");
			if (td.dataset.sig !== sig) {
				td.dataset.sig = sig;
				td.replaceChildren(...kids);
			}
		});
	}

	// fill shows builds in the table named name (and its empty note),
	// keeping the rows it had, in place, so a focused link stays focused.
	function fill(name, builds, cols) {
		const table = root.querySelector('table[data-builds="' + name + '"]');
		const empty = root.querySelector('[data-empty="' + name + '"]');
		if (!table) {
			return;
		}
		const tbody = table.tBodies[0];
		const old = new Map();
		for (const tr of Array.from(tbody.rows)) {
			old.set(tr.dataset.id, tr);
		}
		let next = tbody.firstElementChild;
		for (const b of builds) {
			let tr = old.get(b.id);
			if (tr) {
				old.delete(b.id);
			} else {
				tr = makeRow(b, cols);
			}
			updateRow(tr, b, cols);
			if (tr === next) {
				next = next.nextElementSibling;
			} else {
				tbody.insertBefore(tr, next);
			}
		}
		for (const tr of old.values()) {
			tr.remove();
		}
		table.closest(".table-wrap").hidden = builds.length === 0;
		if (empty) {
			empty.hidden = builds.length !== 0;
		}
	}

	const finished = (b) => b.state === "done" || b.state === "failed";

	if (kind === "builds") {
		poll("/api/builds", 2000, (data) => {
			fill("active", data.builds.filter((b) => !finished(b)), columns.builds);
			fill("finished", data.builds.filter(finished), columns.builds);
		});
	} else if (kind === "recent") {
		const status = root.querySelector("[data-live-status]");
		status.textContent = "Loading the builds of this instance…";
		status.hidden = false;
		root.querySelector('[data-show="live"]').hidden = false;
		poll("/api/builds", 2000, (data) => {
			fill("recent", data.builds.slice(0, 10), columns.builds);
			fill("errors", data.builds.filter((b) => b.state === "failed").slice(0, 15), columns.errors);
		}, () => {
			root.hidden = true; // this registry lists no builds
		});
	} else if (kind === "build") {
		buildPage();
	}

	// buildPage follows one build until it ends: its state, progress and
	// the end of its log, which stays scrolled to its end unless the
	// reader scrolled up.
	function buildPage() {
		const log = root.querySelector('[data-field="log"]');
		log.scrollTop = log.scrollHeight;
		if ("finished" in root.dataset) {
			return;
		}
		const field = (name) => root.querySelector('[data-field="' + name + '"]');
		const set = (name, text) => {
			const e = field(name);
			if (e && e.textContent !== text) {
				e.textContent = text;
			}
		};
		const bar = (name, done, total) => {
			const e = root.querySelector('[data-bar="' + name + '"]');
			e.max = total || 1;
			e.value = done || 0;
			e.hidden = !total;
		};
		const title = document.title;
		poll("/api/builds/" + encodeURIComponent(root.dataset.build), 1000, (b) => {
			const state = field("state");
			if (state.textContent !== b.state) {
				state.textContent = b.state;
				state.className = "state state-" + b.state;
			}
			set("time", timeText(b));
			set("paths", b.paths_total ? (b.paths_done || 0) + " of " + b.paths_total : "—");
			set("layers", b.layers_total ? (b.layers_done || 0) + " of " + b.layers_total : "—");
			set("bytes", b.bytes_compressed ? bytes(b.bytes_compressed) : "—");
			bar("paths", b.paths_done, b.paths_total);
			bar("layers", b.layers_done, b.layers_total);
			set("queued", clock(b.queued_at));
			set("started", clock(b.started_at));
			set("finished", clock(b.finished_at));
			const digest = field("digest");
			if (b.manifest_digest && digest.textContent !== b.manifest_digest) {
				digest.replaceChildren(el("code", { class: "digest" }, b.manifest_digest));
			}
			set("error", b.error || "");
			set("pull", "docker pull " + location.host + "/" + b.image + ":" + b.tag);
			for (const e of root.querySelectorAll("[data-show]")) {
				e.hidden = e.dataset.show !== b.state;
			}
			const text = b.log || "";
			if (log.textContent !== text) {
				const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
				log.textContent = text;
				if (atEnd) {
					log.scrollTop = log.scrollHeight;
				}
			}
			const empty = root.querySelector('[data-empty="log"]');
			empty.hidden = text !== "";
			if (finished(b)) {
				empty.textContent = "The build wrote nothing.";
			}
			document.title = b.state + " — " + title;
			return !finished(b);
		}, () => {
			const status = root.querySelector("[data-live-status]");
			status.textContent = "This build is no longer listed here (the registry restarted, or it is one of more than 100 finished since).";
			status.hidden = false;
		});
	}
})();
