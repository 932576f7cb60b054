package blobgc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestKnownPrefixes scans nixport's code for the names of the objects it
// stores and fails when one lies under a prefix KnownPrefixes lacks (the
// collector would not know whether it keeps blobs alive), or when a
// prefix listed there is no longer used. It follows a name from the call
// that stores, reads, lists or deletes the object (storage's object
// methods, and every function that passes its argument on to one, such as
// source.PutRecord) back to its constant beginning: through constants,
// variables, string concatenation, fmt.Sprintf and the functions that
// build names. A name it cannot follow fails the test too: build it from
// a constant prefix.
func TestKnownPrefixes(t *testing.T) {
	s := newScanner(t, "..")
	s.scan()
	for _, u := range s.unresolved {
		t.Errorf("cannot tell the prefix of an object name: %s", u)
	}
	known := map[string]Prefix{}
	for _, p := range KnownPrefixes {
		known[p.Prefix] = p
	}
	for prefix, where := range s.found {
		if _, ok := known[prefix]; !ok {
			t.Errorf("objects under %q (%s) are not in KnownPrefixes: say there what the collector makes of them, "+
				"and if they keep blobs alive, mark them (a RoleRecords prefix, or a Roots set)", prefix, strings.Join(where, ", "))
		}
	}
	for _, p := range KnownPrefixes {
		if _, ok := s.found[p.Prefix]; !ok && p.Owner != "blobgc" {
			t.Errorf("KnownPrefixes lists %q (%s), which no code uses any more", p.Prefix, p.Owner)
		}
	}
	if len(s.found) < 5 {
		t.Errorf("the scan found only %v: it is broken", s.found)
	}
}

// skipDirs are not scanned: storage's own layout (blobs, leases, probes)
// is not made of object names, the collector's objects are its own, and
// test helpers store what tests ask.
var skipDirs = []string{".git", "testdata", "storage", "testkit", "bench", "blobgc"}

type pkgInfo struct {
	name   string
	values map[string]fileExpr             // package-level constants and variables
	funcs  map[string][]*ast.FuncDecl      // functions and methods, by name
	files  map[*ast.FuncDecl]*ast.File     // the file of each function
	decls  []*ast.FuncDecl                 // every function, to scan
	fileOf map[*ast.File]map[string]string // a file's imports: local name → path
}

type fileExpr struct {
	expr ast.Expr
	file *ast.File
}

type scanner struct {
	t       *testing.T
	fset    *token.FileSet
	module  string
	pkgs    map[string]*pkgInfo // by import path
	byName  map[string]*pkgInfo
	callers map[string]int // functions taking an object name, and which argument it is

	found      map[string][]string
	unresolved []string
}

// ctx is where an expression is resolved.
type ctx struct {
	pkg  *pkgInfo
	file *ast.File
	fn   *ast.FuncDecl // the function it is in
	// call, when fn's parameters stand for the arguments of a call being
	// followed, is that call, in caller.
	call   *ast.CallExpr
	caller *ctx
	depth  int
}

func newScanner(t *testing.T, root string) *scanner {
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	module := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(mod), "\n", 2)[0], "module"))
	s := &scanner{t: t, fset: token.NewFileSet(), module: module, pkgs: map[string]*pkgInfo{}, byName: map[string]*pkgInfo{},
		callers: map[string]int{"PutObject": 1, "CreateObject": 1, "GetObject": 1, "ListObjects": 1, "DeleteObject": 1},
		found:   map[string][]string{}}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if slices.Contains(skipDirs, strings.Split(filepath.ToSlash(rel), "/")[0]) || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(s.fset, path, nil, 0)
		if err != nil {
			return err
		}
		importPath := module
		if dir := filepath.ToSlash(filepath.Dir(rel)); dir != "." {
			importPath += "/" + dir
		}
		p := s.pkgs[importPath]
		if p == nil {
			p = &pkgInfo{name: f.Name.Name, values: map[string]fileExpr{}, funcs: map[string][]*ast.FuncDecl{},
				files: map[*ast.FuncDecl]*ast.File{}, fileOf: map[*ast.File]map[string]string{}}
			s.pkgs[importPath] = p
		}
		imports := map[string]string{}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			imports[name] = path
		}
		p.fileOf[f] = imports
		for _, decl := range f.Decls {
			switch decl := decl.(type) {
			case *ast.GenDecl:
				for _, spec := range decl.Specs {
					if vs, ok := spec.(*ast.ValueSpec); ok {
						for i, n := range vs.Names {
							if i < len(vs.Values) {
								p.values[n.Name] = fileExpr{vs.Values[i], f}
							}
						}
					}
				}
			case *ast.FuncDecl:
				p.funcs[decl.Name.Name] = append(p.funcs[decl.Name.Name], decl)
				p.files[decl] = f
				p.decls = append(p.decls, decl)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scan finds every call that names an object, learning the functions
// that pass a name on, until it learns no more.
func (s *scanner) scan() {
	for {
		s.found, s.unresolved = map[string][]string{}, nil
		learned := false
		for _, p := range s.pkgs {
			for _, fn := range p.decls {
				if fn.Body == nil {
					continue
				}
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					arg, ok := s.callers[calleeName(call)]
					if !ok || arg >= len(call.Args) {
						return true
					}
					text, param, ok := s.resolve(call.Args[arg], &ctx{pkg: p, file: p.files[fn], fn: fn})
					where := s.fset.Position(call.Pos()).String()
					switch {
					case ok && param >= 0:
						if s.callers[fn.Name.Name] != param {
							s.callers[fn.Name.Name] = param
							learned = true
						}
					case ok:
						prefix := text
						if i := strings.Index(text, "/"); i >= 0 {
							prefix = text[:i+1]
						}
						s.found[prefix] = append(s.found[prefix], where)
					default:
						s.unresolved = append(s.unresolved, where)
					}
					return true
				})
			}
		}
		if !learned {
			return
		}
	}
}

func calleeName(call *ast.CallExpr) string {
	switch fun := call.Fun.(type) {
	case *ast.Ident:
		return fun.Name
	case *ast.SelectorExpr:
		return fun.Sel.Name
	}
	return ""
}

// resolve returns the known beginning of the string e evaluates to (up
// to its first "/" at least, or the whole of it), or, when e is a
// parameter of the function it is in, which one (param >= 0).
func (s *scanner) resolve(e ast.Expr, c *ctx) (text string, param int, ok bool) {
	if c.depth > 30 {
		return "", -1, false
	}
	next := *c
	next.depth++
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", -1, false
		}
		v, err := strconv.Unquote(e.Value)
		return v, -1, err == nil
	case *ast.ParenExpr:
		return s.resolve(e.X, &next)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", -1, false
		}
		x, _, ok := s.resolveValue(e.X, &next)
		if !ok {
			return "", -1, false
		}
		if strings.Contains(x, "/") {
			return x, -1, true
		}
		y, _, ok := s.resolveValue(e.Y, &next)
		if !ok {
			return "", -1, false
		}
		return x + y, -1, true
	case *ast.UnaryExpr:
		if e.Op == token.RANGE { // an element of what is ranged over
			return s.resolve(e.X, &next)
		}
	case *ast.Ident:
		return s.resolveIdent(e, &next)
	case *ast.SelectorExpr:
		if p, ok := s.importedPkg(e.X, c); ok {
			if v, ok := p.values[e.Sel.Name]; ok {
				return s.resolve(v.expr, &ctx{pkg: p, file: v.file, depth: next.depth})
			}
		}
	case *ast.CallExpr:
		return s.resolveCall(e, &next)
	}
	return "", -1, false
}

// resolveValue is resolve of an operand, following a parameter to the
// argument of the call being followed, if any.
func (s *scanner) resolveValue(e ast.Expr, c *ctx) (string, int, bool) {
	text, param, ok := s.resolve(e, c)
	if ok && param >= 0 {
		if c.call == nil || param >= len(c.call.Args) {
			return "", -1, false
		}
		return s.resolveValue(c.call.Args[param], c.caller)
	}
	return text, param, ok
}

func (s *scanner) resolveIdent(id *ast.Ident, c *ctx) (string, int, bool) {
	if id.Obj == nil {
		if v, ok := c.pkg.values[id.Name]; ok {
			return s.resolve(v.expr, &ctx{pkg: c.pkg, file: v.file, depth: c.depth})
		}
		return "", -1, false
	}
	switch decl := id.Obj.Decl.(type) {
	case *ast.ValueSpec:
		for i, n := range decl.Names {
			if n.Name == id.Name && i < len(decl.Values) {
				return s.resolve(decl.Values[i], c)
			}
		}
	case *ast.AssignStmt:
		for i, l := range decl.Lhs {
			if l, ok := l.(*ast.Ident); ok && l.Name == id.Name {
				if len(decl.Rhs) == len(decl.Lhs) {
					return s.resolve(decl.Rhs[i], c)
				}
				if len(decl.Rhs) == 1 {
					if u, ok := decl.Rhs[0].(*ast.UnaryExpr); ok && u.Op == token.RANGE {
						return s.resolve(u, c) // an element of what is ranged over
					}
					if i == 0 {
						return s.resolve(decl.Rhs[0], c) // a call's first result
					}
				}
			}
		}
	case *ast.Field:
		if c.fn == nil {
			return "", -1, false
		}
		i := 0
		for _, field := range c.fn.Type.Params.List {
			for _, n := range field.Names {
				if field == decl && n.Name == id.Name {
					return "", i, true
				}
				i++
			}
		}
	}
	return "", -1, false
}

// importedPkg returns the module's package e names, if e is an import's
// name.
func (s *scanner) importedPkg(e ast.Expr, c *ctx) (*pkgInfo, bool) {
	id, ok := e.(*ast.Ident)
	if !ok || id.Obj != nil || c.file == nil {
		return nil, false
	}
	p, ok := s.pkgs[c.pkg.fileOf[c.file][id.Name]]
	return p, ok
}

func (s *scanner) resolveCall(call *ast.CallExpr, c *ctx) (string, int, bool) {
	if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
		if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Obj == nil && c.pkg.fileOf[c.file][pkg.Name] == "fmt" && sel.Sel.Name == "Sprintf" && len(call.Args) > 0 {
			format, _, ok := s.resolveValue(call.Args[0], c)
			if i := strings.IndexByte(format, '%'); ok && i >= 0 {
				format = format[:i]
			}
			return format, -1, ok && format != ""
		}
	}
	// Names a listing returns start with the prefix listed.
	if arg, ok := s.callers[calleeName(call)]; ok && calleeName(call) == "ListObjects" && arg < len(call.Args) {
		return s.resolveValue(call.Args[arg], c)
	}
	var decls []*ast.FuncDecl
	pkg := c.pkg
	switch fun := call.Fun.(type) {
	case *ast.Ident:
		decls = pkg.funcs[fun.Name]
	case *ast.SelectorExpr:
		if p, ok := s.importedPkg(fun.X, c); ok {
			pkg = p
		}
		decls = pkg.funcs[fun.Sel.Name]
	}
	if len(decls) != 1 || decls[0].Body == nil {
		return "", -1, false
	}
	fn := decls[0]
	callee := &ctx{pkg: pkg, file: pkg.files[fn], fn: fn, call: call, caller: c, depth: c.depth}
	text, found := "", false
	ok := true
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		if _, lit := n.(*ast.FuncLit); lit {
			return false
		}
		ret, isRet := n.(*ast.ReturnStmt)
		if !isRet || len(ret.Results) == 0 {
			return true
		}
		t, _, rok := s.resolveValue(ret.Results[0], callee)
		if !rok || (found && t != text) {
			ok = false
		}
		text, found = t, true
		return true
	})
	return text, -1, ok && found
}
