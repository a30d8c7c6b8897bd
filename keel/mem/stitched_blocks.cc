// The stitching policy's stitched blocks (glake.md §1): stitching free pBlocks into a second
// mapping, reusing cached sBlocks, the per-chunk used flags (Note [Per-chunk state]) and the
// garbage collection of sBlock virtual ranges.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "keel/mem/stitching_allocator.h"

namespace keel::mem::internal {

void StitchingAllocator::SetUsed(const Block* b, bool used) {
  const Segment* seg = b->segment;
  SegmentChunks& sc = seg_chunks_.at(seg);
  const uint64_t offset = b->addr - seg->base;
  const size_t first = offset / granularity_;
  const size_t end = (offset + b->size + granularity_ - 1) / granularity_;
  for (size_t i = first; i < end; ++i) {
    ChunkState& cs = sc.chunks[i];
    if (used ? cs.users++ > 0 : --cs.users > 0) continue;  // no change between used and free
    for (Stitched* s : cs.views) {
      s->used_chunks = used ? s->used_chunks + 1 : s->used_chunks - 1;
      Reclassify(s);
    }
  }
}

std::pair<size_t, size_t> StitchingAllocator::WholeChunks(const Block* b) const {
  const uint64_t offset = b->addr - b->segment->base;
  return {(offset + granularity_ - 1) / granularity_, (offset + b->size) / granularity_};
}

uint64_t StitchingAllocator::FreeChunkBytes(int stream) const {
  uint64_t sum = 0;
  for (const Block* b : large_pool_.blocks()) {
    if (b->stream != stream) continue;
    const auto [first, end] = WholeChunks(b);
    if (end > first) sum += (end - first) * granularity_;
  }
  return sum;
}

void StitchingAllocator::Reclassify(Stitched* s) {
  if (s->state == Stitched::State::kActive) return;
  const auto want = AllChunksFree(s) ? Stitched::State::kIntact : Stitched::State::kFragmented;
  if (want == s->state) return;
  if (want == Stitched::State::kIntact) {
    fragmented_.erase(s);
    intact_.insert(s);
  } else {
    intact_.erase(s);
    fragmented_.insert(s);
  }
  s->state = want;
}

bool StitchingAllocator::AllChunksFree(const Stitched* s) const { return s->used_chunks == 0; }

Stitched* StitchingAllocator::BestFitStitched(int stream, uint64_t size) const {
  Stitched key;
  key.stream = stream;
  key.size = size;
  auto it = intact_.lower_bound(&key);
  if (it == intact_.end() || (*it)->stream != stream) return nullptr;
  const double cap = static_cast<double>(size) * options_.reuse_limit;
  return static_cast<double>((*it)->size) <= cap ? *it : nullptr;
}

// Hands out the first size/granularity chunks of intact sBlock `s`; its tail chunks stay in
// their primaries' free blocks, where anyone may take them (GMLake never splits an sBlock).
StatusOr<Allocation> StitchingAllocator::ReuseStitched(Stitched* s, uint64_t size, uint64_t bytes) {
  intact_.erase(s);
  s->state = Stitched::State::kActive;
  KEEL_RETURN_IF_ERROR(ClaimChunks(s, size / granularity_));
  s->active_bytes = size;
  s->requested = bytes;
  s->last_use = ++tick_;
  ++stats_.stitched_reuse_count;
  AddActive(&stats_, size, bytes);
  return Allocation{reinterpret_cast<void*>(s->base), size};
}

// Claims s's first n chunks: each run of chunks contiguous in one primary segment is carved
// out of the free pBlocks holding it.
Status StitchingAllocator::ClaimChunks(Stitched* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const ChunkRef& head = s->chunks[i];
    size_t j = i + 1;
    while (j < n && s->chunks[j].segment == head.segment &&
           s->chunks[j].index == head.index + (j - i)) {
      ++j;
    }
    const uintptr_t primary = head.segment->base + head.index * granularity_;
    KEEL_RETURN_IF_ERROR(Carve(head.segment, primary, (j - i) * granularity_, s));
    i = j;
  }
  return OkStatus();
}

Status StitchingAllocator::Carve(Segment* seg, uintptr_t addr, uint64_t len, Stitched* s) {
  while (len > 0) {
    Block* b = seg->Containing(addr);
    if (b == nullptr || b->allocated || b->claimed_by != nullptr) {
      return InternalError("stitching allocator: a chunk to claim is not in a free block");
    }
    large_pool_.Erase(b);
    if (b->addr < addr) {
      Block* head = b;
      b = SplitBlock(head, addr - head->addr);
      large_pool_.Insert(head);
    }
    const uint64_t take = std::min(len, b->size);
    if (b->size > take) large_pool_.Insert(SplitBlock(b, take));
    b->allocated = true;
    b->claimed_by = s;
    SetUsed(b, true);
    s->pieces.push_back(b);
    addr += take;
    len -= take;
  }
  return OkStatus();
}

// GMLake's stitch: the whole free chunks of the stream's free pBlocks, largest block first,
// until they cover `size`, mapped in that order into a new virtual range. Needs
// size >= frag_limit and at least two blocks.
std::optional<Allocation> StitchingAllocator::TryStitch(uint64_t size, uint64_t bytes, int stream,
                                                        int attempt) {
  if (size < options_.frag_limit_bytes) return std::nullopt;
  std::vector<Block*> picked;
  uint64_t sum = 0;
  Block key;  // sorts after every block of `stream`
  key.stream = stream;
  key.size = UINT64_MAX;
  key.addr = UINTPTR_MAX;
  for (auto it = large_pool_.blocks().upper_bound(&key);
       it != large_pool_.blocks().begin() && sum < size;) {
    Block* b = *--it;
    if (b->stream != stream) break;
    const auto [first, end] = WholeChunks(b);
    if (end <= first) continue;
    picked.push_back(b);
    sum += (end - first) * granularity_;
  }
  if (sum < size || picked.size() < 2) return std::nullopt;
  if (stitched_since_gc_ + size > options_.auto_gc_bytes) {
    GarbageCollect(0, 1);
    stitched_since_gc_ = 0;
  }
  std::vector<ChunkRef> chunks;
  for (Block* b : picked) {
    SegmentChunks* sc = &seg_chunks_.at(b->segment);
    const auto [first, end] = WholeChunks(b);
    for (size_t i = first; i < end && chunks.size() * granularity_ < size; ++i) {
      chunks.push_back(ChunkRef{b->segment, sc, static_cast<uint32_t>(i)});
    }
  }
  StatusOr<uintptr_t> base = MapStitched(chunks, size, attempt);
  if (!base.ok()) return std::nullopt;
  auto owned = std::make_unique<Stitched>();
  Stitched* s = owned.get();
  s->base = *base;
  s->size = size;
  s->stream = stream;
  s->chunks = std::move(chunks);
  stitched_.emplace(s->base, std::move(owned));
  for (const ChunkRef& c : s->chunks) {
    c.state().views.push_back(s);
    ++c.states->views;
  }
  if (!ClaimChunks(s, s->chunks.size()).ok()) return std::nullopt;  // cannot happen
  s->active_bytes = size;
  s->requested = bytes;
  s->last_use = ++tick_;
  stitched_since_gc_ += size;
  ++stats_.stitch_count;
  stats_.stitched_bytes += size;
  ++stats_.segment_count;
  AddActive(&stats_, size, bytes);
  return Allocation{reinterpret_cast<void*>(s->base), size};
}

// Reserves `size` bytes and maps `chunks` over them in order; on failure undoes it, collects
// free sBlocks (their ranges and mappings are what runs out) and tries once more.
StatusOr<uintptr_t> StitchingAllocator::MapStitched(const std::vector<ChunkRef>& chunks,
                                                    uint64_t size, int attempt) {
  Status last;
  for (int round = 0; round < 2; ++round) {
    if (round > 0) GarbageCollect(size, attempt + 1);
    StatusOr<uintptr_t> base = backend_->Reserve(size);
    if (!base.ok()) {
      last = base.status();
      continue;
    }
    size_t mapped = 0;
    for (; mapped < chunks.size(); ++mapped) {
      last = backend_->Map(*base + mapped * granularity_, chunks[mapped].id());
      if (!last.ok()) break;
      ++stats_.map_count;
    }
    if (mapped == chunks.size()) return *base;
    while (mapped > 0) {
      --mapped;
      (void)backend_->Unmap(*base + mapped * granularity_);
      ++stats_.unmap_count;
    }
    (void)backend_->Free(*base, size);
  }
  return last;
}

void StitchingAllocator::FreeStitched(Stitched* s) {
  SubActive(&stats_, s->active_bytes, s->requested);
  std::vector<Block*> pieces = std::move(s->pieces);
  s->pieces.clear();
  for (Block* b : pieces) FreeBlock(b);
  s->active_bytes = 0;
  s->requested = 0;
  s->last_use = ++tick_;
  s->state = AllChunksFree(s) ? Stitched::State::kIntact : Stitched::State::kFragmented;
  if (s->state == Stitched::State::kIntact) {
    intact_.insert(s);
  } else {
    fragmented_.insert(s);
  }
}

// GMLake's GC of sBlock virtual ranges (physical chunks stay with their primaries). Pass 1
// destroys fragmented sBlocks, stopping once `need` × 4^(attempt+1) bytes are freed when a
// size is given; pass 2 (attempt > 0) destroys intact ones, least recently used first.
void StitchingAllocator::GarbageCollect(uint64_t need, int attempt) {
  uint64_t freed = 0;
  const uint64_t enough = need << (2 * (attempt + 1));
  bool any = false;
  std::vector<Stitched*> victims(fragmented_.begin(), fragmented_.end());
  for (Stitched* s : victims) {
    if (need > 0 && freed >= enough) break;
    freed += s->size;
    DestroyStitched(s);
    any = true;
  }
  if (attempt > 0) {
    victims.assign(intact_.begin(), intact_.end());
    std::sort(victims.begin(), victims.end(),
              [](const Stitched* a, const Stitched* b) { return a->last_use < b->last_use; });
    for (Stitched* s : victims) {
      if (need > 0 && freed >= need) break;
      freed += s->size;
      DestroyStitched(s);
      any = true;
    }
  }
  if (any) ++stats_.gc_count;
}

void StitchingAllocator::DestroyStitched(Stitched* s) {
  for (size_t i = 0; i < s->chunks.size(); ++i) {
    (void)backend_->Unmap(s->base + i * granularity_);
    ++stats_.unmap_count;
    std::vector<Stitched*>& views = s->chunks[i].state().views;
    views.erase(std::remove(views.begin(), views.end(), s), views.end());
    --s->chunks[i].states->views;
  }
  (void)backend_->Free(s->base, s->size);
  intact_.erase(s);
  fragmented_.erase(s);
  --stats_.segment_count;
  stitched_.erase(s->base);
}

}  // namespace keel::mem::internal
