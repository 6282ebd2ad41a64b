import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

const cliOnly = ['@oclif/*', 'chalk', 'cli-table3', '@inquirer/*']

export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results.json']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {globals: {...globals.node}},
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
      '@typescript-eslint/consistent-type-imports': ['error', {fixStyle: 'inline-type-imports'}],
      'no-console': 'off',
    },
  },
  {
    // The protocol library: no CLI packages, no process-wide input or terminal output.
    files: ['src/lib/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {patterns: [
        {group: cliOnly, message: 'src/lib is the protocol library: CLI packages belong in src/cli or src/commands.'},
        {group: ['**/cli/**', '**/commands/**'], message: 'src/lib must not import the CLI layer.'},
      ]}],
      'no-restricted-properties': ['error',
        {object: 'process', property: 'env', message: 'src/lib takes options; read the environment in src/cli.'},
        {object: 'process', property: 'stdin', message: 'src/lib never reads stdin.'},
        {object: 'process', property: 'stdout', message: 'src/lib never writes to the terminal.'},
        {object: 'process', property: 'stderr', message: 'src/lib never writes to the terminal.'},
        {object: 'process', property: 'exit', message: 'src/lib never exits the process.'},
      ],
      'no-console': 'error',
    },
  },
  {
    // Commands are glue: transports are reached through src/lib.
    files: ['src/commands/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {paths: [
        {name: 'ws', message: 'Use the WebSocket transport in src/lib.'},
        {name: 'undici', message: 'Use the HTTP transport in src/lib.'},
      ]}],
      'no-restricted-properties': ['error',
        {object: 'process', property: 'exit', message: 'Never exit inside a command; return or throw.'},
      ],
    },
  },
  {
    // Test peers are written from the RFCs alone, so tests of src/lib are not circular.
    files: ['test/helpers/peers/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {patterns: [{group: ['**/src/**'], message: 'Spec peers must not import pushpull code.'}]}],
    },
  },
)
