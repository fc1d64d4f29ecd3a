import CycleTimeCore
import Foundation
import Yams

/// A bad run configuration: names the file and the field.
public struct ConfigError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let file: String
    public let message: String
    public init(_ file: String, _ message: String) { self.file = file; self.message = message }
    public var description: String { "\(file): \(message)" }
    public var errorDescription: String? { description }
}

/// A configuration type: a Codable struct whose every field has a default (`init()`).
public protocol RunConfiguration: Codable {
    init()
    /// Fields (dotted snake_case paths) that are read but not used, kept so that configs written
    /// before still load: setting one gives one warning (`ConfigLoader.warn`).
    static var unusedFields: [String: String] { get }
}

extension RunConfiguration {
    public static var unusedFields: [String: String] { [:] }
}

/// Strict YAML configurations, as PyTorch research codebases write them: fields in snake_case
/// (camelCase accepted), every field optional with its default from `T()`, unknown fields and
/// ill-typed values are errors naming the field, and `key.path=value` overrides on the command line.
public enum ConfigLoader {
    /// Reads and decodes the YAML file at `path`, then applies `overrides` ("a.b=value", value in YAML).
    public static func load<T: RunConfiguration>(_ type: T.Type, path: String, overrides: [String] = []) throws -> T {
        guard FileManager.default.fileExists(atPath: path) else { throw ConfigError(path, "no such config file") }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { throw ConfigError(path, "is a folder, not a config file") }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int, size > maxBytes {
            throw ConfigError(path, "\(size) bytes; a config file is at most \(maxBytes >> 10) KiB")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError(path, "cannot read the config file") }
        guard let text = String(data: data, encoding: .utf8) else { throw ConfigError(path, "the config file is not UTF-8 text") }
        return try decode(type, yaml: text, file: path, overrides: overrides)
    }

    /// Bounds on what a config may make the parser build (a config is a few kilobytes): its size,
    /// the nesting of flow collections (each level is a recursion of the composer) and the number of
    /// nodes once aliases are expanded (a "billion laughs" file is a few lines).
    public static let maxBytes = 1 << 20
    public static let maxNesting = 64
    public static let maxNodes = 100_000

    /// YAML text to a node tree, within the bounds above; errors name `file`.
    static func compose(_ yaml: String, file: String, what: String) throws -> Node? {
        if yaml.utf8.count > maxBytes { throw ConfigError(file, "\(what): more than \(maxBytes >> 10) KiB") }
        var depth = 0, deepest = 0, quote: UInt8? = nil
        for c in yaml.utf8 {
            if let q = quote { if c == q { quote = nil }; continue }
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "'"): quote = c
            case UInt8(ascii: "["), UInt8(ascii: "{"): depth += 1; deepest = max(deepest, depth)
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth = max(0, depth - 1)
            case UInt8(ascii: "\n"): quote = nil
            default: break
            }
        }
        if deepest > maxNesting { throw ConfigError(file, "\(what): collections nested more than \(maxNesting) deep") }
        let node: Node?
        do { node = try Yams.compose(yaml: yaml) } catch {
            throw ConfigError(file, "\(what): " + "\(error)".split(separator: "\n").joined(separator: " "))
        }
        if let node, nodeCount(node, limit: maxNodes) > maxNodes {
            throw ConfigError(file, "\(what): more than \(maxNodes) values once its aliases are expanded")
        }
        return node
    }

    /// Nodes of a tree, counting stops just past `limit` (an alias bomb is never walked whole).
    static func nodeCount(_ node: Node, limit: Int) -> Int {
        var count = 0
        func walk(_ n: Node) {
            if count > limit { return }
            count += 1
            switch n {
            case .mapping(let m): for (k, v) in m { walk(k); walk(v) }
            case .sequence(let s): for v in s { walk(v) }
            default: break
            }
        }
        walk(node)
        return count
    }

    /// Decodes `T` from YAML text (`file` names it in errors).
    public static func decode<T: RunConfiguration>(_ type: T.Type, yaml: String, file: String, overrides: [String] = []) throws -> T {
        var user = try compose(yaml, file: file, what: "not valid YAML") ?? Node([(Node, Node)]())
        if case .scalar(let s) = user, s.string.isEmpty || s.tag.description.hasSuffix("null") { user = Node([(Node, Node)]()) }
        guard user.mapping != nil else { throw ConfigError(file, "the top level must be a mapping of fields (key: value)") }
        user = camelCased(user)
        for o in overrides { user = try applyOverride(o, to: user, file: file) }
        let defaults: Node
        do {
            defaults = try node(of: T())
        } catch {
            throw ConfigError(file, "cannot encode the default configuration: \(error)")
        }
        try checkFields(user, against: T(), defaults: defaults, path: "", file: file)
        // Resolved configs hold every field at its default: only a value set otherwise is worth a word.
        for (field, why) in T.unusedFields.sorted(by: { $0.key < $1.key }) {
            guard let set = value(user, camelCase(field)), !same(set, value(defaults, camelCase(field))) else { continue }
            warn("\(file): field '\(field)' is not used (\(why)); it is accepted so that older configs load")
        }
        let merged = merge(user, over: defaults)
        do {
            return try YAMLDecoder().decode(T.self, from: Yams.serialize(node: merged))
        } catch let e as DecodingError {
            throw ConfigError(file, describe(e))
        } catch {
            throw ConfigError(file, "\(error)")
        }
    }

    /// Where config warnings go (standard error by default).
    nonisolated(unsafe) public static var warn: (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }

    /// Equal nodes, numbers compared as numbers ("1.0e-4" is "0.0001").
    static func same(_ a: Node, _ b: Node?) -> Bool {
        guard let b else { return false }
        if let x = a.scalar.flatMap({ Double($0.string) }), let y = b.scalar.flatMap({ Double($0.string) }) { return x == y }
        if let x = a.sequence, let y = b.sequence { return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) } }
        return a == b
    }

    /// The node at a dotted path of a mapping, if any.
    static func value(_ node: Node, _ path: String) -> Node? {
        var n: Node? = node
        for key in path.split(separator: ".") { n = n?.mapping?[String(key)] }
        return n
    }

    /// "crw.learning_rate" -> "crw.learningRate".
    static func camelCase(_ path: String) -> String { path.split(separator: ".").map { camel(String($0)) }.joined(separator: ".") }

    /// Every field of a configuration as YAML: the file at `path` with `overrides` applied and the
    /// defaults filled in, or the defaults alone when `path` is nil (`--print-config`).
    public static func resolvedText<T: RunConfiguration>(_ type: T.Type, path: String?, overrides: [String] = []) throws -> String {
        let value = try path.map { try load(type, path: $0, overrides: overrides) } ?? decode(type, yaml: "{}", file: "(defaults)", overrides: overrides)
        return try encode(value)
    }

    /// YAML text of a configuration, with snake_case field names (as `decode` reads them).
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        try Yams.serialize(node: snakeCased(node(of: value)))
    }

    /// The node of a value, through JSON: JSONEncoder writes the shortest decimal that reads back
    /// exactly (Float and Double alike), which Yams' emitter does not; JSON is YAML.
    static func node<T: Encodable>(of value: T) throws -> Node {
        let json = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        guard let n = try Yams.compose(yaml: json) else { return Node([(Node, Node)]()) }
        return declarationOrder(blockStyle(n), like: value)
    }

    /// Mapping keys in the order the struct declares its fields (JSONEncoder's order is arbitrary).
    static func declarationOrder(_ node: Node, like value: Any) -> Node {
        guard let m = node.mapping else { return node }
        let children = Mirror(reflecting: value).children.compactMap { c in c.label.map { ($0, c.value) } }
        var pairs: [(Node, Node)] = []
        var used = Set<String>()
        for (label, child) in children {
            if let v = m[label] { pairs.append((Node(label), declarationOrder(v, like: child))); used.insert(label) }
        }
        for (k, v) in m where !used.contains(k.scalar?.string ?? "") { pairs.append((k, v)) }
        return Node(pairs)
    }

    /// Block-style mappings and lists, plain scalars wherever plain reads back as the same string.
    static func blockStyle(_ node: Node) -> Node {
        switch node {
        case .mapping(let m):
            return Node(m.map { (Node($0.0.scalar?.string ?? ""), blockStyle($0.1)) })
        case .sequence(let s):
            return Node(s.map { blockStyle($0) })
        case .scalar(let sc):
            if sc.style == .doubleQuoted || sc.style == .singleQuoted {
                let t = sc.string
                let special = CharacterSet(charactersIn: ":#{}[],&*!|>'\"%@`\\\n\t")
                let lower = t.lowercased()
                let ambiguous = t.isEmpty || Double(t) != nil || t.rangeOfCharacter(from: special) != nil
                    || t.first == " " || t.last == " " || t.first == "-" || t.first == "?"
                    || ["true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"].contains(lower)
                return ambiguous ? Node(t, .implicit, .doubleQuoted) : Node(t)
            }
            return Node(sc.string, sc.tag, .plain)
        default:
            return node
        }
    }

    // MARK: field names

    static func camel(_ key: String) -> String {
        guard key.contains("_") else { return key }
        let parts = key.split(separator: "_", omittingEmptySubsequences: true)
        guard let first = parts.first else { return key }
        return String(first) + parts.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }

    public static func snake(_ key: String) -> String {
        var out = ""
        for ch in key {
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
        return out
    }

    static func renamingKeys(_ node: Node, _ f: (String) -> String) -> Node {
        switch node {
        case .mapping(let m):
            return Node(m.map { (k, v) in (k.scalar.map { Node(f($0.string)) } ?? k, renamingKeys(v, f)) })
        case .sequence(let s):
            return Node(s.map { renamingKeys($0, f) })
        default:
            return node
        }
    }

    static func camelCased(_ node: Node) -> Node { renamingKeys(node, camel) }
    static func snakeCased(_ node: Node) -> Node { renamingKeys(node, snake) }

    // MARK: checking and merging

    /// Every key of `node` must be a stored property of `value`; where the default is a mapping
    /// (a nested section) the value must be one too, checked recursively.
    static func checkFields(_ node: Node, against value: Any, defaults: Node?, path: String, file: String) throws {
        guard let m = node.mapping else { return }
        let mirror = Mirror(reflecting: value)
        var fields: [String: Any] = [:]
        var order: [String] = []
        for child in mirror.children {
            if let l = child.label { fields[l] = child.value; order.append(l) }
        }
        var seen = Set<String>()
        for (k, v) in m {
            guard let key = k.scalar?.string else { throw ConfigError(file, "field names must be plain strings (in '\(path)')") }
            let full = path.isEmpty ? snake(key) : path + "." + snake(key)
            guard seen.insert(key).inserted else { throw ConfigError(file, "field '\(full)' is given twice") }
            guard let child = fields[key] else {
                let known = order.map(snake).joined(separator: ", ")
                throw ConfigError(file, "unknown field '\(full)'" + (order.isEmpty ? "" : " (known fields\(path.isEmpty ? "" : " of '\(path)'"): \(known))"))
            }
            let section = defaults?.mapping?[key]
            if section?.mapping != nil {
                guard v.mapping != nil else { throw ConfigError(file, "field '\(full)' must be a mapping of fields") }
                try checkFields(v, against: child, defaults: section, path: full, file: file)
            } else if v.mapping != nil && section != nil {
                throw ConfigError(file, "field '\(full)' must be a single value or a list, not a mapping")
            }
        }
    }

    /// `top` over `base`: mappings merge key by key, anything else replaces.
    static func merge(_ top: Node, over base: Node) -> Node {
        guard let tm = top.mapping, let bm = base.mapping else { return top }
        var pairs: [(Node, Node)] = []
        var used = Set<String>()
        for (k, v) in bm {
            let key = k.scalar?.string ?? ""
            if let t = tm[key] { pairs.append((k, merge(t, over: v))); used.insert(key) } else { pairs.append((k, v)) }
        }
        for (k, v) in tm where !used.contains(k.scalar?.string ?? "") { pairs.append((k, v)) }
        return Node(pairs)
    }

    /// "a.b.c=value": sets field a.b.c (snake or camel case) to the YAML value.
    static func applyOverride(_ text: String, to node: Node, file: String) throws -> Node {
        guard let eq = text.firstIndex(of: "=") else { throw ConfigError(file, "override '\(text)' must be key.path=value") }
        let path = text[..<eq].split(separator: ".").map { camel(String($0)) }
        guard !path.isEmpty, !path.contains(where: \.isEmpty) else { throw ConfigError(file, "override '\(text)' has an empty field name") }
        let valueText = String(text[text.index(after: eq)...])
        let value: Node
        value = try compose(valueText, file: file, what: "override '\(text)': the value is not valid YAML") ?? Node("")
        var nested = value
        for key in path.reversed() { nested = Node([(Node(key), nested)]) }
        return merge(nested, over: node)
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ ctx: DecodingError.Context) -> String {
            ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? snake($0.stringValue) }
                .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        }
        switch e {
        case .typeMismatch(let type, let ctx):
            return "field '\(path(ctx))' has the wrong type: expected \(typeName(type))"
        case .valueNotFound(let type, let ctx):
            return "field '\(path(ctx))' is empty: expected \(typeName(type))"
        case .keyNotFound(let key, let ctx):
            let p = path(ctx)
            return "field '\(p.isEmpty ? "" : p + ".")\(snake(key.stringValue))' is missing"
        case .dataCorrupted(let ctx):
            if let u = ctx.underlyingError { return "\(u)" }
            let p = path(ctx)
            if p.isEmpty { return "not a valid configuration: \(ctx.debugDescription)" }
            return "field '\(p)' has an invalid value (\(ctx.debugDescription))"
        @unknown default:
            return "\(e)"
        }
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is Int.Type, is UInt64.Type, is Int64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default:
            let n = "\(t)"
            if n.hasPrefix("Array") { return "a list" }
            if n.hasPrefix("Dictionary") { return "a mapping" }
            return "a value of type \(n)"
        }
    }
}

/// The checks every run configuration shares (pretraining and AVA alike): errors are one line
/// naming the YAML key (snake_case, as the file spells it).
public struct ConfigValidator {
    public let file: String
    public init(file: String) { self.file = file }

    /// Largest number any field takes unless its bounds say otherwise.
    public static let maxNumber = 1e9
    /// Limits of some kinds of fields (a larger value would overflow or exhaust memory).
    public static let imageSide: ClosedRange<Double> = 0...8192
    public static let frames: ClosedRange<Double> = 0...100_000
    public static let channels: ClosedRange<Double> = 0...65_536
    public static let threads: ClosedRange<Double> = 0...256
    public static let queue: ClosedRange<Double> = 0...1024
    public static let fraction: ClosedRange<Double> = 0...1
    public static let seeds: ClosedRange<Double> = 0...Double(1 << 53)

    public func fail(_ key: String, _ why: String) -> ConfigError { ConfigError(file, "field '\(key)' \(why)") }

    public func check(_ ok: Bool, _ key: String, _ why: @autoclosure () -> String) throws {
        if !ok { throw fail(key, why()) }
    }

    /// Every number of `config` (fields of its sections, list elements, both ends of ranges, set
    /// optionals) must be finite and within `bounds[key]` (default 0...maxNumber).
    public func checkNumbers<T: RunConfiguration>(_ config: T, bounds: [String: ClosedRange<Double>]) throws {
        // Fields that are not used are not checked (setting them gives a warning instead).
        for n in Self.numbers(in: config) where T.unusedFields[n.key] == nil {
            try check(n.value.isFinite, n.key, "must be a finite number, got \(Self.format(n.value))")
            let b = bounds[n.key] ?? 0...Self.maxNumber
            try check(b.contains(n.value), n.key, "must be in \(Self.format(b.lowerBound))...\(Self.format(b.upperBound)), got \(Self.format(n.value))")
        }
    }

    /// A number of a configuration: its YAML key ("train.grad_clip"; a list's elements and a
    /// range's ends under the list's key), its value and whether the field is an integer.
    public struct Number: Sendable {
        public let key: String
        public let value: Double
        public let isInteger: Bool
    }

    /// The numbers of a configuration, in declaration order.
    public static func numbers(in value: Any, key: String = "") -> [Number] {
        switch value {
        case let d as Double: return [Number(key: key, value: d, isInteger: false)]
        case let f as Float: return [Number(key: key, value: Double(f), isInteger: false)]
        case let i as Int: return [Number(key: key, value: Double(i), isInteger: true)]
        case let r as ClosedRange<Double>: return [r.lowerBound, r.upperBound].map { Number(key: key, value: $0, isInteger: false) }
        default: break
        }
        let m = Mirror(reflecting: value)
        switch m.displayStyle {
        case .optional?, .collection?:
            return m.children.flatMap { numbers(in: $0.value, key: key) }
        case .struct?:
            return m.children.flatMap { c -> [Number] in
                guard let l = c.label else { return [] }
                let name = ConfigLoader.snake(l)
                return numbers(in: c.value, key: key.isEmpty ? name : key + "." + name)
            }
        default:
            return []
        }
    }

    static func format(_ v: Double) -> String {
        v.isFinite && v == v.rounded() && abs(v) < 1e18 ? String(Int64(v)) : "\(v)"
    }
}
