// The SQLite frame store: nfm crawl's embedded default (--emit sqlite:PATH) and a
// source for the commands (--store sqlite:PATH). One `frames` table (a row per
// frame, with the frame's whole JSON for exact reloads) and one table per feature
// with real columns (store_schema.h), all indexed by (vm, host_time_ns). WAL mode,
// so readers never wait for the crawler. Schema and example queries: docs/stores.md.
#pragma once

#include <memory>
#include <string>

#include "store/frame_sink.h"
#include "store/frame_store.h"

namespace nfm {

// Creates the database and its tables if missing. Frames are committed by a
// writer thread, many per transaction; SinkOptions::retain_ns deletes frames
// (and their rows) older than that before the newest frame written, and
// SinkOptions::max_store_bytes the oldest frames while the store's data is larger
// (both in chunks of 512 frames per batch; counted as SinkStats::frames_expired).
Result<std::unique_ptr<FrameSink>> open_sqlite_sink(const std::string& path,
                                                    const SinkOptions& options = {});
// Where `nfm crawl` keeps frames when no --emit is given: $NFM_STORE_PATH, else
// /var/lib/nfm/frames.db for root, else $XDG_STATE_HOME/nfm/frames.db
// (~/.local/state/nfm/frames.db). Creates the directory.
Result<std::string> default_sqlite_path();
// Opens an existing database read-only.
Result<std::unique_ptr<FrameStore>> open_sqlite_store(const std::string& path);

}  // namespace nfm
