// Asset tools: list a notebook's assets, read one in bounded slices, renew their leases, prune the unused ones.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { DEFAULT_LEASE_TTL_S, type AssetStore } from '../../notebook/assets.js';
import { downscaleImage, isRasterMime } from '../../notebook/images.js';
import type { McpContent } from '../../notebook/outputs.js';
import type { Workspace } from '../workspace.js';
import { boolean, defineTool, integer, notebookPathSchema, result, ToolInputError, toolSpec } from './common.js';

// Lists in structured results stop here; the text says how many there were.
const MAX_LISTED = 1000;
const MAX_TTL_S = 10 * 365 * 24 * 60 * 60;

const assetPathSchema = z
  .string({
    required_error: "asset_path is required: a workspace-relative asset path as list_assets shows it, e.g. 'assets/0123456789abcdef.png'",
    invalid_type_error: "asset_path must be a string: a workspace-relative asset path as list_assets shows it, e.g. 'assets/0123456789abcdef.png'",
  })
  .min(1, "asset_path must not be empty: give an asset path as list_assets shows it, e.g. 'assets/0123456789abcdef.png'")
  .max(4096, 'asset_path is too long (4096 characters at most)')
  .describe('Asset path relative to the workspace root, as list_assets shows it (it must lie inside an assets/ folder)');

/** Joins lines until the budget is spent, then says how many were left out. */
function boundedLines(lines: string[], budget: number, header = ''): string {
  let text = header;
  for (let i = 0; i < lines.length; i++) {
    const line = `${text ? '\n' : ''}${lines[i]}`;
    const rest = `\n… ${lines.length - i} more (not shown: the result is limited to ${budget} characters)`;
    if (text.length + line.length + (i < lines.length - 1 ? rest.length : 0) > budget) return text + rest;
    text += line;
  }
  return text;
}

function clip<T>(items: T[]): T[] {
  return items.length > MAX_LISTED ? items.slice(0, MAX_LISTED) : items;
}

const LIST_ASSETS_SPEC = toolSpec('list_assets', {
  title: 'List assets',
  description:
    "Lists the files in the notebook folder's assets/ folder (saved plots and full copies of long outputs): size, whether a notebook in that folder references it, its lease expiry, and whether this server created it. Read one with read_asset.",
  input: { notebook_path: notebookPathSchema },
  output: {
    notebook_path: z.string(),
    folder: z.string(),
    asset_count: z.number(),
    assets: z.array(
      z.object({
        path: z.string(),
        bytes: z.number(),
        referenced: z.boolean(),
        referenced_by: z.array(z.string()),
        lease_expires_at: z.string().nullable(),
        created_by_server: z.boolean(),
      }),
    ),
    unreadable_notebooks: z.array(z.object({ path: z.string(), reason: z.string() })),
  },
  annotations: { readOnlyHint: true },
});

/** read_asset states the workspace's output budget, so its spec is built once per budget (one per process in practice). */
const readAssetSpecs = new Map<number, ReturnType<typeof buildReadAssetSpec>>();

function readAssetSpec(budget: number): ReturnType<typeof buildReadAssetSpec> {
  let spec = readAssetSpecs.get(budget);
  if (!spec) readAssetSpecs.set(budget, (spec = buildReadAssetSpec(budget)));
  return spec;
}

function buildReadAssetSpec(budget: number) {
    return toolSpec('read_asset', {
    title: 'Read an asset',
    description: `Reads an asset: a slice of a text asset (by character offset and length, at most ${budget} characters per call; follow next_offset for more), the lines of a text asset that contain search (case-insensitive), or an image as image content.`,
    input: {
      asset_path: assetPathSchema,
      offset: integer('offset', 'Character offset to start a text slice at (default 0)', 0, Number.MAX_SAFE_INTEGER).optional(),
      length: integer('length', `Characters to read (default and most: ${budget})`, 1, Number.MAX_SAFE_INTEGER).optional(),
      search: z
        .string({ invalid_type_error: 'search must be a string: the text to look for' })
        .min(1, 'search must not be empty: give the text to look for')
        .max(1000, 'search is at most 1000 characters')
        .optional()
        .describe('Text to look for (case-insensitive); answers the matching lines with their line numbers and offsets instead of a slice'),
    },
    output: {
      asset_path: z.string(),
      kind: z.enum(['text', 'search', 'image']),
      total_chars: z.number().optional(),
      offset: z.number().optional(),
      next_offset: z.number().nullable().optional(),
      text: z.string().optional(),
      search: z.string().optional(),
      match_count: z.number().optional(),
      matches: z.array(z.object({ line: z.number(), offset: z.number(), text: z.string() })).optional(),
      truncated: z.boolean().optional(),
      mime_type: z.string().optional(),
      bytes: z.number().optional(),
      downscaled: z.boolean().optional(),
    },
    annotations: { readOnlyHint: true },
  });
}

const RENEW_ASSET_LEASES_SPEC = toolSpec('renew_asset_leases', {
  title: 'Renew asset leases',
  description:
    "Renews the leases of the notebook's assets (those it wrote and those its file on disk references) to now + ttl_s; a lease is never shortened. Call it when you save the notebook yourself, so its assets are not pruned.",
  input: {
    notebook_path: notebookPathSchema,
    ttl_s: integer('ttl_s', `Lease length in seconds (default ${DEFAULT_LEASE_TTL_S}, i.e. 24 h)`, 1, MAX_TTL_S).optional(),
  },
  output: {
    notebook_path: z.string(),
    renewed_count: z.number(),
    renewed: z.array(z.object({ path: z.string(), expires_at: z.string() })),
  },
  annotations: { idempotentHint: true },
});

const PRUNE_UNUSED_ASSETS_SPEC = toolSpec('prune_unused_assets', {
  title: 'Prune unused assets',
  description:
    "Deletes assets in the notebook folder's assets/ that this server created, whose lease has expired and that no notebook in that folder references on disk. Everything else is kept and the reason given. Use dry_run to see what would go.",
  input: {
    notebook_path: notebookPathSchema,
    dry_run: boolean('dry_run', 'List what would be deleted without deleting anything (default false)').optional(),
  },
  output: {
    notebook_path: z.string(),
    folder: z.string(),
    dry_run: z.boolean(),
    deleted_count: z.number(),
    deleted: z.array(z.object({ path: z.string(), bytes: z.number() })),
    freed_bytes: z.number(),
    kept_count: z.number(),
    kept: z.array(z.object({ path: z.string(), reason: z.string() })),
    unreadable_notebooks: z.array(z.object({ path: z.string(), reason: z.string() })),
    forgotten_leases: z.array(z.string()),
  },
  annotations: { destructiveHint: true },
});

export function registerAssetTools(server: McpServer, workspace: Workspace, assets: AssetStore): void {
  const budget = workspace.config.maxOutputChars;
  const imageBudget = workspace.config.maxImageBytes;

  defineTool(server, LIST_ASSETS_SPEC, async ({ notebook_path }) => {
    const { relative } = await workspace.notebooks.resolve(notebook_path);
    const inventory = await assets.inventory(relative);
    const lines = inventory.assets.map((asset) => {
      const use = asset.referenced ? `referenced by ${asset.referencedBy.join(', ')}` : 'unreferenced';
      const lease = asset.createdByServer ? `lease until ${asset.leaseExpiresAt ?? '?'}` : 'not created by this server';
      return `${asset.path}  ${asset.bytes} bytes, ${use}, ${lease}`;
    });
    const notes: string[] = [];
    if (!inventory.notebookExists) notes.push(`(${relative} does not exist; these are the assets of its folder)`);
    for (const nb of inventory.unreadableNotebooks) notes.push(`(${nb.path} could not be read: ${nb.reason}; whether it references an asset is unknown)`);
    const header = [`${inventory.assets.length} asset(s) in ${inventory.folder}/`, ...notes].join('\n');
    return result({
      text: inventory.assets.length ? boundedLines(lines, budget, header) : boundedLines([], budget, `no assets in ${inventory.folder}/${notes.length ? `\n${notes.join('\n')}` : ''}`),
      structured: {
        notebook_path: inventory.notebookPath,
        folder: inventory.folder,
        asset_count: inventory.assets.length,
        assets: clip(inventory.assets).map((asset) => ({
          path: asset.path,
          bytes: asset.bytes,
          referenced: asset.referenced,
          referenced_by: asset.referencedBy,
          lease_expires_at: asset.leaseExpiresAt,
          created_by_server: asset.createdByServer,
        })),
        unreadable_notebooks: inventory.unreadableNotebooks,
      },
    });
  });

  defineTool(server, readAssetSpec(budget), async ({ asset_path, offset, length, search }) => {
    if (search !== undefined && (offset !== undefined || length !== undefined)) {
      throw new ToolInputError('give either search or offset/length, not both: a search answers each matching line with its offset, which you can then read from');
    }
    if (search !== undefined) {
      const found = await assets.read(asset_path, { search, maxChars: Math.max(1000, budget - 500) });
      if (found.kind !== 'search') throw new ToolInputError(`${found.path} is not a text asset`);
      const header = `${found.matchCount} line(s) of ${found.path} contain '${search}'${found.truncated ? `; the first ${found.matches.length} are shown (narrow the search, or read around an offset)` : ''}`;
      const lines = found.matches.map((match) => `${match.line} (offset ${match.offset}): ${match.text}`);
      return result({
        text: boundedLines(lines, budget, header.slice(0, 1000)),
        structured: {
          asset_path: found.path,
          kind: 'search',
          search,
          total_chars: found.totalChars,
          match_count: found.matchCount,
          matches: found.matches,
          truncated: found.truncated,
        },
      });
    }
    // The header is sized with the longest path and numbers it can show, so header + slice stays within the budget.
    const describe = (path: string, start: number, end: number, total: number, next: number | null): string =>
      `${path}: characters ${start}–${end} of ${total}${next === null ? ' (the end)' : `; more from next_offset ${next} (read_asset with offset=${next})`}`;
    const widest = Number.MAX_SAFE_INTEGER;
    const room = Math.max(1, budget - describe(asset_path, widest, widest, widest, widest).length - 1);
    const slice = await assets.read(asset_path, { offset: offset ?? 0, length: Math.min(length ?? room, room) });
    if (slice.kind === 'image') return imageResult(slice.path, slice.mimeType, slice.data);
    if (slice.kind !== 'text') throw new ToolInputError(`${slice.path} is not a text asset`);
    const end = slice.offset + slice.text.length;
    return result({
      text: `${describe(slice.path, slice.offset, end, slice.totalChars, slice.nextOffset)}\n${slice.text}`,
      structured: {
        asset_path: slice.path,
        kind: 'text',
        offset: slice.offset,
        next_offset: slice.nextOffset,
        total_chars: slice.totalChars,
        text: slice.text,
      },
    });
  });

  function imageResult(path: string, mimeType: string, data: Buffer) {
    const extra: McpContent[] = [];
    let note = '';
    let downscaled = false;
    const base64 = data.toString('base64');
    if (base64.length <= imageBudget) {
      extra.push({ type: 'image', data: base64, mimeType });
    } else if (isRasterMime(mimeType)) {
      // The budget bounds the base64 text that travels; base64 is 4/3 of the bytes.
      const fitted = downscaleImage(data, mimeType, Math.floor((imageBudget * 3) / 4));
      if (fitted) {
        downscaled = true;
        note = `; shown downscaled to ${fitted.width}x${fitted.height} (the asset keeps the original ${fitted.originalWidth}x${fitted.originalHeight})`;
        extra.push({ type: 'image', data: fitted.data.toString('base64'), mimeType: fitted.mime });
      } else {
        note = `; too large to show even downscaled (limit ${imageBudget} bytes)`;
      }
    } else {
      note = `; too large to show (limit ${imageBudget} bytes) and ${mimeType} cannot be downscaled`;
    }
    return result({
      text: `${path}: ${mimeType}, ${data.length} bytes${note}`,
      structured: { asset_path: path, kind: 'image', mime_type: mimeType, bytes: data.length, downscaled },
      extra,
    });
  }

  defineTool(server, RENEW_ASSET_LEASES_SPEC, async ({ notebook_path, ttl_s }) => {
    const { relative } = await workspace.notebooks.resolve(notebook_path);
    const renewed = await assets.renew(relative, ttl_s ?? DEFAULT_LEASE_TTL_S);
    const lines = renewed.map((lease) => `${lease.path}  until ${lease.expiresAt}`);
    return result({
      text: renewed.length ? boundedLines(lines, budget, `renewed ${renewed.length} lease(s) of ${relative}`) : `${relative} has no asset leases to renew`,
      structured: {
        notebook_path: relative,
        renewed_count: renewed.length,
        renewed: clip(renewed).map((lease) => ({ path: lease.path, expires_at: lease.expiresAt })),
      },
    });
  });

  defineTool(server, PRUNE_UNUSED_ASSETS_SPEC, async ({ notebook_path, dry_run }) => {
    const { relative } = await workspace.notebooks.resolve(notebook_path);
    const pruned = await assets.prune(relative, { dryRun: dry_run ?? false });
    const verb = pruned.dryRun ? 'would delete' : 'deleted';
    const header = [
      `${pruned.dryRun ? 'dry run: ' : ''}${verb} ${pruned.deleted.length} asset(s) in ${pruned.folder}/ (${pruned.freedBytes} bytes), kept ${pruned.kept.length}`,
      ...pruned.unreadableNotebooks.map((nb) => `${nb.path} could not be read (${nb.reason}), so nothing that may be referenced was deleted`),
    ].join('\n');
    const lines = [
      ...pruned.deleted.map((item) => `${verb}: ${item.path} (${item.bytes} bytes)`),
      ...pruned.kept.map((item) => `kept: ${item.path}: ${item.reason}`),
    ];
    return result({
      text: boundedLines(lines, budget, header),
      structured: {
        notebook_path: pruned.notebookPath,
        folder: pruned.folder,
        dry_run: pruned.dryRun,
        deleted_count: pruned.deleted.length,
        deleted: clip(pruned.deleted),
        freed_bytes: pruned.freedBytes,
        kept_count: pruned.kept.length,
        kept: clip(pruned.kept),
        unreadable_notebooks: pruned.unreadableNotebooks,
        forgotten_leases: clip(pruned.forgottenLeases),
      },
    });
  });
}
