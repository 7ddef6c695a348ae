// Lint = the type checker (npm run lint runs tsc first) plus typescript-eslint's
// type-aware recommended rules, which catch what tsc does not: floating promises
// in controllers, misused async callbacks in event handlers, unsafe `any`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tap/**', 'charts/**', 'tmp/**', '**/.*-tmp.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      'no-console': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      globals: { process: 'readonly', console: 'readonly' },
    },
  },
  {
    // Command-line programs talk to a terminal; their stdout is their interface.
    files: ['hack/**', 'cli/**', 'runner/cli.ts', 'test/**'],
    rules: { 'no-console': 'off' },
  },
  {
    // tap's t.test() returns a promise that tap itself awaits (subtests run in order).
    files: ['test/**'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
);
